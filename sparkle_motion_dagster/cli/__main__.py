"""``python -m sparkle_motion_dagster.cli``: the ``sparkle-motion`` command line."""

from sparkle_motion_dagster.cli.main import entry

if __name__ == "__main__":
    entry()
