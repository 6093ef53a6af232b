"""The notebook's helper cells: the final deliverable, retention (a dry run first), evacuation
with progress and its events, and the warning about an ephemeral artifact root."""

from __future__ import annotations

import subprocess
from html import escape
from pathlib import Path
from typing import Any

from sparkle_motion_dagster.panel.services import _program


def final_deliverable_html(panel) -> str:
    """The final video of the panel's run as a player, a download link and the manual-review banner;
    or what is missing."""
    status = panel.refresh()
    if status is None:
        return "<b>No run yet</b>: Generate Plan and Run Production in the control panel first."
    row = panel.final_row()
    banner = panel.review_banner.value
    if row is None:
        return (f"<b>{escape(status['run_id'])} has no video_final yet</b> ({escape(status['status'])}): use "
                f"<i>Resume from finalize</i> in the control panel's final deliverable section.{banner}")
    url = escape(panel._url(row) or "", quote=True)
    return (f"{banner}<video controls preload='metadata' width='640' src='{url}' type='video/mp4'></video>"
            f"<div><a href='{url}' download='video_final.mp4' target='_blank'>Download video_final.mp4</a> "
            f"({(row.get('size_bytes') or 0) / 1e6:.2f} MB · {row.get('duration_s') or 0:.1f} s)</div>")


def retention_dry_run(*arguments: str) -> str:
    """What ``sparkle-motion retention`` would delete (it deletes only with ``--yes``)."""
    if "--yes" in arguments:
        raise ValueError("retention_dry_run: --yes deletes; run `sparkle-motion retention ... --yes` yourself")
    done = subprocess.run([_program("sparkle-motion"), "retention", *arguments], capture_output=True, text=True)
    return (done.stdout + done.stderr).strip()


def evacuation_plan(root: str | Path) -> list[dict[str, Any]]:
    """The dry run of an evacuation: each run under the artifact root with its file count and size."""
    runs = Path(root) / "runs"
    found = []
    for run in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []:
        files = [f for f in run.rglob("*") if f.is_file()]
        found.append({"run_id": run.name, "files": len(files), "bytes": sum(f.stat().st_size for f in files)})
    return found


def evacuation_widget(root: str | Path, dest: str | Path):
    """A dry-run listing and an *Evacuate* button with a progress bar; each run's event log gets
    ``filesystem_artifacts.evacuate`` events (pending_copy, then completed, incomplete or failed); a run
    being filmed is refused, naming its missing stages."""
    import ipywidgets as widgets

    from sparkle_motion_dagster.lifecycle.evacuation import evacuate
    from sparkle_motion_dagster.store.storage import ArtifactStore

    plan = evacuation_plan(root)
    total = sum(r["bytes"] for r in plan)
    listing = widgets.HTML(f"<b>Dry run</b>: {len(plan)} run(s), {total / 1e6:.1f} MB would be copied to "
                           f"<code>{escape(str(dest))}</code><br>" + "<br>".join(
                               f"{escape(r['run_id'])}: {r['files']} files, {r['bytes'] / 1e6:.1f} MB" for r in plan))
    bar = widgets.FloatProgress(value=0, min=0, max=1, description="Evacuate")
    result = widgets.HTML()
    button = widgets.Button(description="Evacuate now", button_style="warning", disabled=not plan)

    def progress(step: dict[str, Any]) -> None:
        bar.value = step["bytes_done"] / step["bytes_total"] if step["bytes_total"] else 1.0

    def clicked(_):
        button.disabled = True
        try:
            report = evacuate(ArtifactStore(root), [r["run_id"] for r in plan], dest, progress, actor="notebook")
            result.value = (f"<b>{report['status']}</b>: {report['files_copied']} copied, "
                            f"{report['files_skipped']} already there, {report['left_out']} left out")
        except Exception as exc:  # noqa: BLE001 - shown to the person; the events record it too
            result.value = f"<b style='color:#b00020'>evacuation failed</b>: {escape(str(exc))}"

    button.on_click(clicked)
    return widgets.VBox([listing, widgets.HBox([button, bar]), result])


def ephemeral_warning(root: str | Path) -> str | None:
    """The warning for an artifact root that vanishes with the machine, recorded in each run's event
    log (``filesystem_artifacts.evacuate`` with status ``warning_emitted``); None when it is persistent."""
    from sparkle_motion_dagster.lifecycle.evacuation import ephemeral_root_warning
    from sparkle_motion_dagster.lifecycle.events import write_event

    warning = ephemeral_root_warning(root)
    if warning:
        for run in evacuation_plan(root):
            write_event(root, run["run_id"], "filesystem_artifacts.evacuate",
                        {"artifacts_fs_root": str(root), "status": "warning_emitted", "backend": "filesystem"},
                        actor="notebook")
    return warning
