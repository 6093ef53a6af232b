"""The whole notebook, executed headless with nbclient from ``notebooks/`` of a clone, as Voilà and
Jupyter run it: no state in the environment, a ``dagster dev`` already serving the clone's state
(as ``make ui`` leaves it). The notebook finds that state, reuses that webserver (one, not two),
starts only the artifact service, films the prompt unattended, and the film is in
``sparkle-motion runs`` at the clone's root."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import dagster_dev
from notebook_run import NOTEBOOK, stop_leftover_services, with_parameters

nbformat = pytest.importorskip("nbformat", reason="needs the notebook extra: pip install -e '.[notebook]'")
nbclient = pytest.importorskip("nbclient", reason="needs the notebook extra: pip install -e '.[notebook]'")

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
STATE_VARIABLES = ("SPARKLE_STATE_DIR", "DAGSTER_HOME", "ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_TOKEN", "SPARKLE_DAGSTER_URL",
                   "SPARKLE_ARTIFACTS_URL", "SPARKLE_DAGSTER_PORT", "SPARKLE_ARTIFACTS_PORT", "QA_AUTOMATION_REMOVED")


def outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


def webservers(home: Path) -> list[int]:
    """The pids of Dagster webservers whose instance is ``home``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dagster_webserver" in command or b"dagster-webserver" in command:
            if f"DAGSTER_HOME={home}".encode() in environ:
                found.append(int(proc.name))
    return found


def test_the_notebook_from_notebooks_uses_the_clones_state_and_its_running_ui(tmp_path, monkeypatch):
    for name in STATE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    clone = tmp_path / "clone"  # what find_project_root recognises: workspace.yaml beside the package
    (clone / "notebooks").mkdir(parents=True)
    (clone / "workspace.yaml").write_text((ROOT / "workspace.yaml").read_text())
    (clone / "sparkle_motion_dagster").symlink_to(ROOT / "sparkle_motion_dagster")
    state = clone / "state"
    home = state / "dagster_home"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(home)}
    program = str(Path(sys.executable).parent / "sparkle-motion")
    subprocess.run([program, "paths", "--create"], env=env, cwd=clone, check=True, capture_output=True)
    nb = with_parameters(nbformat.read(NOTEBOOK, as_version=4), SIZE="96x64", AUTO_RUN=True,
                         EVACUATE_TO=str(tmp_path / "evacuated"))
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",  # a safety net only
                                     resources={"metadata": {"path": str(clone / "notebooks")}})
    with dagster_dev(env, state) as (_, ui_url):  # as `make ui` runs it, and records it
        subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.panel.discovery", "dagster", ui_url],
                       env=env, cwd=clone, check=True)
        try:
            with client.setup_kernel():
                for index, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index)  # raises CellExecutionError naming the cell
                one_webserver = webservers(home)  # while the kernel (and anything it started) lives
                # What the services cell shows, before and after its Stop services button.
                probe = nbformat.v4.new_code_cell("shown = services.stop_button(); print(shown.children[0].value)\n"
                                                  "shown.children[1].click(); print(shown.children[0].value)")
                nb.cells.append(probe)
                client.execute_cell(probe, len(nb.cells) - 1)
                after_stop = webservers(home)
        finally:
            stop_leftover_services(state)
            (tmp_path / "executed.ipynb").write_text(json.dumps(nb))
        assert len(one_webserver) == 1 and after_stop == one_webserver, (one_webserver, after_stop)
        assert json.loads((state / "panel_endpoints.json").read_text())["dagster_url"] == ui_url  # still the UI's
    texts = [outputs_text(cell) for cell in nb.cells[:-1] if cell.cell_type == "code"]
    assert f"state: {state} " in "\n".join(texts)  # not notebooks/state
    before, after = outputs_text(probe).split("</pre>")[:2]
    assert f"Dagster UI: {ui_url} — reused" in before and "artifact service: http://127.0.0.1:" in before
    assert "— started here (pid" in before
    assert f"Dagster UI: {ui_url} — reused" in after and "artifact service" in after and "— stopped" in after
    run_id = next(t for t in texts if " succeeded - " in t).split()[0]
    helpers = "\n".join(texts)
    assert "nothing to delete" in helpers  # the retention dry run keeps the one run
    assert "Dry run</b>: 1 run(s)" in helpers  # the evacuation helper lists before it copies
    assert "The artifacts live on persistent storage" in texts[-1] or "WARNING: the artifact root" in texts[-1]
    assert (state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4").stat().st_size > 1000
    clean = {k: v for k, v in os.environ.items() if k not in STATE_VARIABLES}
    listed = subprocess.run([program, "runs"], env=clean, cwd=clone, capture_output=True, text=True, check=True)
    assert run_id in listed.stdout, listed.stdout + listed.stderr  # the CLI at the root sees the notebook's film
