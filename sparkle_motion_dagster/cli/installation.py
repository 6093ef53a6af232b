"""Set-up commands: ``doctor`` (what each stage will run on), ``paths`` and ``dev make-tiny-models``.

The diagnosis itself is :func:`sparkle_motion_dagster.cli.doctor.diagnose`; this module only
prints its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sparkle_motion_dagster.cli.output import echo_json, echo_table

MODELS_INSTALL = "make models  (or: .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e '.[models]')"
"""How to install the ``models`` extra: torch first, pinned, then the extra (as ``make models`` does)."""


def state_found() -> str:
    """Where the project's state is, or where it was looked for; nothing is created."""
    from sparkle_motion_dagster.store.locations import NoStateError, existing_dagster_home, state_dir

    try:
        existing_dagster_home()
    except NoStateError as missing:
        return f"{state_dir()} (not created yet) — {missing}"
    return str(state_dir())


def echo_doctor_report(report: dict[str, Any]) -> None:
    """The doctor's report for a person: a line per stage, then ffmpeg, CUDA and packages on
    stdout; its warnings and what is missing on stderr."""
    rows = []
    for stage, info in report.get("stages", {}).items():
        rows.append([stage, info.get("backend"), "ok" if info.get("ok") else "PROBLEM", info.get("device"),
                     info.get("why")])
        if info.get("problem"):
            rows.append(["", "", "", "", info["problem"]])
        if info.get("weights"):
            rows.append(["", "", "", "", f"weights: {info['weights']}"])
        plan = info.get("memory_plan")
        if plan:
            rows.append(["", "", "", "", "memory plan: " + (plan["summary"] if isinstance(plan, dict) else plan)])
    if rows:
        echo_table(["STAGE", "BACKEND", "STATE", "DEVICE", "WHY"], rows)
    if "ffmpeg" in report:
        click.echo(f"ffmpeg: {report['ffmpeg']}")
    if "cuda" in report:
        cuda = report["cuda"]
        click.echo("cuda: " + ("torch not installed" if cuda is None else
                               ", ".join(cuda["devices"]) if cuda["available"] else "not available (CPU only)"))
    packages = report.get("packages", {})
    if packages:
        click.echo("packages: " + ", ".join(f"{name} {version}" for name, version in packages.items() if version))
    absent = [name for name, version in packages.items() if not version]
    if absent:
        click.echo("not installed: " + ", ".join(absent)
                   + f" (the models extra adds torch, diffusers, transformers; install it with: {MODELS_INSTALL})")
    cluster = report.get("cluster") or {}
    if cluster.get("executor"):
        line = f"executor: {cluster['executor']}"
        for service in ("broker", "postgres"):
            if service in cluster:
                entry = cluster[service]
                state = {True: "reachable", False: "NOT reachable", None: "not probed"}[entry["reachable"]]
                line += f"; {service} {entry['url']} {state}"
        if cluster.get("workers") is not None:
            line += f"; workers: {', '.join(cluster['workers']) or 'none'}"
        click.echo(line)
    for warning in report.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    for problem in report.get("missing", []):
        click.echo(f"missing: {problem}", err=True)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def doctor(as_json: bool) -> int:
    """Which backend each stage uses and what is missing.

    Also the device, ffmpeg, CUDA and the installed packages; exit 1 on a problem.
    """
    from sparkle_motion_dagster.cli.doctor import diagnose

    report = diagnose()
    if as_json:
        echo_json(report)
    else:
        echo_doctor_report(report)
        click.echo(f"state: {state_found()}")
    return 0 if report.get("ok") else 1


@click.command("paths")
@click.option("--create", is_flag=True, help="create the state folder and the Dagster home's storage here")
def paths(create: bool) -> int:
    """Print where the state, DAGSTER_HOME and the artifact root are.

    The state is SPARKLE_STATE_DIR, or the nearest state/ with a dagster_home in this folder or one
    above it; nothing is created without --create.
    """
    from sparkle_motion_dagster.store import locations

    if create:
        locations.dagster_instance().dispose()  # creates the storage of a new home, once
    try:
        home = str(locations.existing_dagster_home())
    except locations.NoStateError as missing:
        home = f"{locations.state_dir() / locations.HOME_FOLDER} (not created yet)"
        click.echo(f"{missing} (`sparkle-motion paths --create` creates it)", err=True)
    click.echo(f"state:         {locations.state_dir()}")
    click.echo(f"DAGSTER_HOME:  {home}")
    click.echo(f"artifact root: {locations.artifacts_root()}")
    return 0


@click.command("make-tiny-models")
@click.argument("directory", metavar="DIR")
def make_tiny_models(directory: str) -> int:
    """Build tiny random SDXL, Wan, VITS and Wav2Lip models in DIR to try the real adapters."""
    from importlib.util import find_spec

    absent = [name for name in ("torch", "diffusers", "transformers") if find_spec(name) is None]
    if absent:
        from sparkle_motion_dagster.cli.errors import CliError

        raise CliError(f"make-tiny-models needs the models extra ({', '.join(absent)} not installed); "
                       f"install it with: {MODELS_INSTALL}")
    from sparkle_motion_dagster.dev.tiny_models import build_all

    built = build_all(Path(directory))
    for name, path in built.items():
        click.echo(f"built {name}: {path}")
    click.echo("try the real adapters on them:")
    click.echo(f"  export IMAGES_SDXL_MODEL={built['sdxl']}")
    click.echo(f"  export VIDEOS_WAN_MODEL={built['wan-flf2v']}   # or {built['wan-i2v']} (image-to-video only)")
    click.echo(f"  export TTS_VITS_MODEL={built['vits']}")
    click.echo(f"  export WAV2LIP_CHECKPOINT={built['wav2lip']}")
    click.echo("  sparkle-motion run --sample --size 64x64")
    return 0


dev = click.Group("dev", help="Developer tools.", commands=[make_tiny_models])

COMMANDS = (doctor, paths, dev)
