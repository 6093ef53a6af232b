"""The whole notebook, executed headless with nbclient on a tiny film: it starts its own services,
films the prompt unattended, and its final-deliverable cell shows the video."""

import json

import pytest
from helpers import free_port
from notebook_run import NOTEBOOK, stop_leftover_services, with_parameters

nbformat = pytest.importorskip("nbformat", reason="needs the notebook extra: pip install -e '.[notebook]'")
nbclient = pytest.importorskip("nbclient", reason="needs the notebook extra: pip install -e '.[notebook]'")

pytestmark = pytest.mark.slow


def outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


def test_the_notebook_runs_top_to_bottom_and_shows_the_final_video(tmp_path, monkeypatch):
    for name in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_TOKEN", "SPARKLE_DAGSTER_URL", "SPARKLE_ARTIFACTS_URL",
                 "QA_AUTOMATION_REMOVED"):
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / "state"
    nb = with_parameters(nbformat.read(NOTEBOOK, as_version=4), STATE_DIR=str(state), SIZE="96x64",
                         DAGSTER_PORT=free_port(), ARTIFACTS_PORT=free_port(), TOKEN="nb-token-0123456789",
                         AUTO_RUN=True, EVACUATE_TO=str(tmp_path / "evacuated"))
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",  # a safety net only
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()  # raises CellExecutionError naming the cell on any error
    finally:
        stop_leftover_services(state)
        (tmp_path / "executed.ipynb").write_text(json.dumps(nb))
    texts = [outputs_text(cell) for cell in nb.cells if cell.cell_type == "code"]
    unattended = next(t for t in texts if " succeeded - " in t)
    run_id = unattended.split()[0]
    final = next(t for t in texts if "<video" in t)
    assert f"/files/runs/{run_id}/finalize/video_final.mp4?expires=" in final  # played from a signed URL
    assert "Manual review" in final and "Download video_final.mp4" in final
    helpers = "\n".join(texts)
    assert "nothing to delete" in helpers  # the retention dry run keeps the one run
    assert "Dry run</b>: 1 run(s)" in helpers  # the evacuation helper lists before it copies
    assert "WARNING: the artifact root" in texts[-1]  # the test's state is in the temp folder: ephemeral
    assert (state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4").stat().st_size > 1000
