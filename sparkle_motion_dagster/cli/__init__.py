"""The ``sparkle-motion`` command line: one click command tree (``main.py`` gathers the command modules)."""
