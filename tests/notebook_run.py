"""Running the notebook as papermill does: parameters injected in a cell after the parameters cell."""

import contextlib
import json
import os
import signal
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sparkle_motion.ipynb"


def with_parameters(nb, **parameters):
    """The notebook with a cell of ``parameters`` right after the cell tagged ``parameters``."""
    import nbformat

    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "# Injected parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cell["id"] = "injected-parameters"
    nb.cells.insert(index + 1, cell)
    return nb


def stop_leftover_services(state: Path) -> None:
    """Stop services a kernel left running (it stops them itself when it shuts down cleanly)."""
    try:
        pids = json.loads((state / "panel_endpoints.json").read_text())["pids"]
    except (OSError, ValueError, KeyError):
        return
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
