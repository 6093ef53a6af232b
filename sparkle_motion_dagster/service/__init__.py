"""The artifact service: a small token-protected HTTP API over the artifact root."""
