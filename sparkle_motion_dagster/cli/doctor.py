"""`sparkle-motion doctor`: which backend each stage will use, and every problem that would stop it.

:func:`diagnose` reads the environment the way the Dagster definitions do
(``resources/selection.py``) but never stops at the first bad value: every bad
variable of every adapter, every missing program and library is reported, each
with its name and the reason. It loads no model and sends no request.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from importlib.util import find_spec
from typing import Any

PACKAGES = ("dagster", "dagster-webserver", "pydantic", "numpy", "pillow", "imageio-ffmpeg", "espeakng-loader",
            "duckdb", "fastapi", "openai", "torch", "diffusers", "transformers", "accelerate", "ftfy")
# What the embedded pipeline cannot run without (the rest belong to the real-model adapters).
CORE_PACKAGES = ("dagster", "pydantic", "numpy", "pillow", "imageio-ffmpeg", "espeakng-loader", "duckdb")
# Import names -> the distribution to install.
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "skimage": "scikit-image"}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _problem(kind: str, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": kind, **details, "message": message}


def _stages(problems: list[dict[str, Any]], *, probe: bool) -> dict[str, Any]:
    """Every stage's entry; its problems (bad settings, missing libraries, what stops it) into ``problems``."""
    from sparkle_motion_dagster import stages as stage_table
    from sparkle_motion_dagster.resources.model_support import MODELS_EXTRA
    from sparkle_motion_dagster.resources.selection import adapters_from_env, stage_entry

    adapters, invalid = adapters_from_env()
    stages: dict[str, Any] = {}
    for row in stage_table.with_resources():
        key, stage = row.resource, row.key
        entry = stage_entry(key, adapters.get(key), invalid.get(key), probe=probe)
        for setting in invalid.get(key, []):
            problems.append(_problem("setting", stage=stage, **setting.as_dict()))
        adapter = adapters.get(key)
        missing = [name for name in (adapter.required_packages() if adapter is not None else ())
                   if find_spec(name) is None]
        for name in missing:
            package = DISTRIBUTIONS.get(name, name)
            problems.append(_problem("package", f"{stage}: {package} is not installed ({entry['backend']} needs it): "
                                                f"{MODELS_EXTRA}", stage=stage, package=package))
        if not entry.get("ok") and key not in invalid and not missing:
            problems.append(_problem("stage", f"{stage}: {entry.get('problem')}", stage=stage))
        stages[stage] = entry
    return stages


def _speech_fit(problems: list[dict[str, Any]], entry: dict[str, Any] | None) -> None:
    """How overlong speech will be fitted (SPARKLE_SPEECH_MAX_TEMPO, SPARKLE_SPEECH_OVERRUN), or their problems."""
    from sparkle_motion_dagster.resources.settings import SettingsError
    from sparkle_motion_dagster.resources.speech.fitting import fit_policy_from_env

    try:
        policy = fit_policy_from_env()
    except SettingsError as error:
        problems.extend(_problem("setting", stage="dialogue_audio", **p.as_dict()) for p in error.problems)
        return
    if entry is not None:
        entry["speech_fit"] = policy.as_dict()


def _ffmpeg(problems: list[dict[str, Any]]) -> str:
    from sparkle_motion_dagster.media.ffmpeg import ffmpeg_exe

    try:
        ffmpeg = ffmpeg_exe()
    except Exception as error:  # noqa: BLE001 - the wheel is missing its binary, or FFMPEG_PATH is wrong
        problems.append(_problem("program", f"ffmpeg: {error}", program="ffmpeg"))
        return str(error)
    if not (shutil.which(ffmpeg) or os.path.exists(ffmpeg)):
        problems.append(_problem("program", f"ffmpeg: {ffmpeg} does not exist", program="ffmpeg"))
    return ffmpeg


def _locations(problems: list[dict[str, Any]]) -> dict[str, str]:
    from sparkle_motion_dagster.store.locations import artifacts_backend, artifacts_root, state_dir

    try:
        artifacts_backend()
    except ValueError as error:
        problems.append(_problem("setting", str(error), variable="ARTIFACTS_BACKEND",
                                 value=os.environ.get("ARTIFACTS_BACKEND"), reason=str(error).split(": ", 1)[-1]))
    return {"state_dir": str(state_dir()), "artifact_root": str(artifacts_root())}


def _cuda() -> dict[str, Any] | None:
    if not _version("torch"):
        return None
    import torch

    return {"available": torch.cuda.is_available(),
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}


def diagnose(*, probe: bool = True) -> dict[str, Any]:
    """The doctor's report, from the process environment.

    ``stages`` (an entry per pipeline stage: ``backend``, ``ok``, ``why``, ``device``, ``problem``
    when not ok), ``ffmpeg``, ``cuda``, ``packages``, ``state_dir``, ``artifact_root``, ``cluster``
    (the executor; with a broker or Postgres set, whether each answers, and the Celery workers
    that answer a ping); ``problems``
    lists every problem as a dict (``kind`` setting / package / program / stage, its ``message``,
    and for a setting its ``variable``, ``value`` and ``reason``), ``missing`` their messages,
    ``warnings`` variables set for an adapter that is not switched on, and ``ok`` is true when
    there is no problem. ``probe`` lets Chatterbox's check run its interpreter.
    """
    from sparkle_motion_dagster.resources.selection import unused_settings

    problems: list[dict[str, Any]] = []
    stages = _stages(problems, probe=probe)
    _speech_fit(problems, stages.get("dialogue_audio"))
    ffmpeg = _ffmpeg(problems)
    packages = {name: _version(name) for name in PACKAGES}
    for name in CORE_PACKAGES:
        if not packages.get(name):
            problems.append(_problem("package", f"{name} is not installed (pip install -e . installs it)",
                                     package=name))
    locations = _locations(problems)
    from sparkle_motion_dagster.cluster.reachability import cluster_report

    cluster = cluster_report(problems, _problem)
    named = {problem.get("variable") for problem in problems}
    warnings = [text for text in unused_settings() if text.split(" ", 1)[0] not in named]
    return {
        "stages": stages,
        "ffmpeg": ffmpeg,
        "cuda": _cuda(),
        "packages": packages,
        **locations,
        "cluster": cluster,
        "problems": problems,
        "missing": [problem["message"] for problem in problems],
        "warnings": warnings,
        "ok": not problems,
    }
