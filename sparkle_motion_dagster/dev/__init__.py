"""Developer tooling: tiny random-initialised models to try the real adapters without downloads."""
