"""What to type next after ``make demo``: the exact commands for the newest film run.

``python -m sparkle_motion_dagster.cli.next_steps`` prints them; it only reads the project's
state (found as every read-only command finds it) and never creates any.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


def next_steps(project: Path | None = None) -> list[str]:
    """The lines to print: how to put the CLI on PATH, then status, the UI and the video of the
    newest film run; or where state was looked for when there is none."""
    from sparkle_motion_dagster.orchestration.status import submitted_at
    from sparkle_motion_dagster.store.locations import existing_artifacts_root
    from sparkle_motion_dagster.store.run_files import stage_file
    from sparkle_motion_dagster.store.storage import ArtifactStore

    store = ArtifactStore(existing_artifacts_root())
    runs = [(submitted_at(store, run_id), run_id) for run_id in store.run_ids()]
    runs = [entry for entry in runs if entry[0] is not None]
    if not runs:
        return [f"no film runs yet under {store.root}"]
    run_id = max(runs)[1]
    video = stage_file(store, run_id, "video_final", "video_final.mp4")
    folder = shlex.quote(str(project or Path.cwd()))
    commands = [
        (f"cd {folder} && source .venv/bin/activate", "puts sparkle-motion and dagster on PATH"),
        (f"sparkle-motion status {run_id}", "where the film run stands"),
        ("sparkle-motion runs", "every film run"),
        ("make ui", "the Dagster UI on http://127.0.0.1:3000 (film from it with the new_film job)"),
        ("sparkle-motion run --plan sparkle_motion_dagster/samples/lantern_walk.json",
         "a two-shot sample that needs no --preview"),
    ]
    width = max(len(command) for command, _ in commands)
    lines = ["", "Next, in any shell:"] + [f"  {command:<{width}}  # {why}" for command, why in commands]
    if video.exists():
        lines.append(f"The video: {video}")
    else:
        lines.append(f"The video will be at {video} (finish it with: sparkle-motion resume {run_id})")
    return lines


def main() -> int:
    from sparkle_motion_dagster.store.locations import NoStateError

    try:
        lines = next_steps()
    except NoStateError as missing:
        click.echo(str(missing), err=True)
        return 2
    for line in lines:
        click.echo(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
