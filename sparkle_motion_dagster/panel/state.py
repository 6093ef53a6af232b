"""Which state folder the notebook uses: the one the CLI and the Dagster UI use.

Outside Colab that is :func:`runs.locations.state_dir` (``SPARKLE_STATE_DIR``, else the nearest
``state/`` holding a ``dagster_home`` above the current folder, else the clone's ``state/``), so
a notebook opened from ``notebooks/`` and ``sparkle-motion runs`` at the clone's root share their
films. In Colab, with no state found, it is a folder under Google Drive (``USE_DRIVE``) or under
``/content``, never the kernel's working folder.
"""

from __future__ import annotations

import os
from pathlib import Path

COLAB_DRIVE_STATE = Path("/content/drive/MyDrive/sparkle_motion/state")
COLAB_STATE = Path("/content/sparkle_motion/state")


def notebook_state_dir(explicit: str | os.PathLike | None = None, *, use_drive: bool = False,
                       in_colab: bool = False) -> Path:
    """The notebook's state folder, in this order: ``explicit`` (the ``STATE_DIR`` parameter);
    ``SPARKLE_STATE_DIR``; in Colab with ``use_drive``, the Drive folder; the state the CLI would
    find from the current folder; in Colab, ``/content/sparkle_motion/state``; else where the CLI
    would create it."""
    from sparkle_motion_dagster.store.locations import find_state_dir, state_dir

    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("SPARKLE_STATE_DIR"):
        return state_dir()
    if in_colab and use_drive:
        return COLAB_DRIVE_STATE
    found = find_state_dir()
    if found is not None:
        return found
    return COLAB_STATE if in_colab else state_dir()


def use_state(state: Path) -> None:
    """Point this kernel (and every process it starts) at ``state``."""
    os.environ["SPARKLE_STATE_DIR"] = str(state)
    os.environ["DAGSTER_HOME"] = str(state / "dagster_home")
