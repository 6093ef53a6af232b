"""The stage table is the one list of stages: a new row reaches every consumer without other edits."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparkle_motion_dagster import stages

ROOT = Path(__file__).resolve().parents[1]

# A frame-interpolation stage as a contributor would add it: one row (after the rows already there),
# and its resource folder (here an in-memory module: a weight-free default and a model the
# environment switches on). No other module is edited.
NEW_ROW = '''
    Stage("frame_interpolation", "frame_interpolation", ("interpolation_manifest.json",), renders=True,
          deps=("video_clips",), gpu=True, resource="interpolator", work_unit="frame", cost_grows_with_pixels=True,
          manifest="interpolation_manifest.json", embedded="interpolation.blend:BlendInterpolator",
          adapters=("interpolation.rife:RifeInterpolator",), embedded_why="embedded frame blending (no model)",
          file_types=(FileType("video", "interpolated_video"),), tab="Interpolated"),
'''

SCRIPT = textwrap.dedent('''
    import json, sys, types
    from pathlib import Path
    from typing import ClassVar

    import dagster as dg

    # The table with one more row, loaded as the package's own stage module before anything reads it.
    source = Path(sys.argv[1]).read_text()
    end = source.index(")\\n\\nSTAGE_KEYS")
    module = types.ModuleType("sparkle_motion_dagster.stages")
    module.__file__ = sys.argv[1]
    sys.modules[module.__name__] = module
    exec(compile(source[:end] + sys.argv[2] + source[end:], sys.argv[1], "exec"), module.__dict__)
    import sparkle_motion_dagster
    sparkle_motion_dagster.stages = module

    # Its resource folder.
    from sparkle_motion_dagster.resources import settings

    class BlendInterpolator(dg.ConfigurableResource):
        backend: ClassVar[str] = "frame-blend"

    class RifeInterpolator(settings.EnvConfigured):
        switch: ClassVar[str] = "model"
        backend: ClassVar[str] = "rife"
        model: str = settings.env_field("INTERP_RIFE_MODEL", "")
        scale: int = settings.env_field("INTERP_RIFE_SCALE", 2, ge=2)

    for name, cls in (("blend", BlendInterpolator), ("rife", RifeInterpolator)):
        folder = types.ModuleType(f"sparkle_motion_dagster.resources.interpolation.{name}")
        setattr(folder, cls.__name__, cls)
        sys.modules[folder.__name__] = folder
    sys.modules["sparkle_motion_dagster.resources.interpolation"] = types.ModuleType("interpolation")

    from sparkle_motion_dagster.cli import doctor
    from sparkle_motion_dagster.film.plan import MoviePlan
    from sparkle_motion_dagster.panel import previews
    from sparkle_motion_dagster.resources import selection
    from sparkle_motion_dagster.insight import catalog, estimates

    doctor._cuda = lambda: None  # the GPU is not what this checks, and importing torch takes seconds
    plan = MoviePlan.model_validate(json.loads(Path(sys.argv[3]).read_text()))
    units = estimates.plan_units(plan)
    switched, problems = selection.adapters_from_env({"INTERP_RIFE_MODEL": "rife-4.6", "INTERP_RIFE_SCALE": "1"})
    print(json.dumps({
        "keys": list(module.STAGE_KEYS),
        "downstream_of_clips": module.downstream("video_clips"),
        "doctor": doctor.diagnose(probe=False)["stages"].get("frame_interpolation"),
        "embedded": type(selection.embedded_resources()["interpolator"]).__name__,
        "switched": type(selection.adapters_from_env({"INTERP_RIFE_MODEL": "rife-4.6"})[0]["interpolator"]).__name__,
        "bad_setting": [p.variable for p in problems.get("interpolator", [])],
        "unused": selection.unused_settings({"INTERP_RIFE_SCALE": "3"}),
        "tabs": [list(tab) for tab in previews.TABS],
        "units": [units["frame_interpolation"], units["video_clips"]],
        "estimate_backend": estimates.backends_of(selection.embedded_resources())["frame_interpolation"]["backend"],
        "artifact_type": catalog.infer_artifact_type("frame_interpolation", "x/shot_001.mp4"),
        "catalog_order": list(catalog.STAGE_ORDER),
    }))
''')


@pytest.mark.slow
def test_a_new_row_in_the_stage_table_reaches_every_consumer_of_stages(tmp_path):
    script = tmp_path / "add_stage.py"
    script.write_text(SCRIPT)
    plan = ROOT / "sparkle_motion_dagster" / "samples" / "lantern_walk.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for variable in [name for name in env if name.startswith(("INTERP_", "IMAGES_", "VIDEOS_", "TTS_", "WAV2LIP_"))]:
        del env[variable]
    done = subprocess.run([sys.executable, str(script), str(ROOT / "sparkle_motion_dagster" / "stages.py"), NEW_ROW,
                           str(plan)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["keys"] == [*stages.STAGE_KEYS, "frame_interpolation"]
    assert "frame_interpolation" in seen["downstream_of_clips"]
    # doctor: the stage and why its default runs
    assert seen["doctor"]["backend"] == "frame-blend"
    assert seen["doctor"]["why"] == "INTERP_RIFE_MODEL is not set: embedded frame blending (no model)"
    # adapter selection: the embedded default, the switch, a bad value named, an unused setting
    assert seen["embedded"] == "BlendInterpolator"
    assert seen["switched"] == "RifeInterpolator"
    assert seen["bad_setting"] == ["INTERP_RIFE_SCALE"]
    assert seen["unused"] == ["INTERP_RIFE_SCALE is set but INTERP_RIFE_MODEL is not: it is not used"]
    # panel: its preview tab
    assert seen["tabs"][-1] == ["Interpolated", "frame_interpolation"]
    # estimates: counted in frames, described by its resource's backend
    assert seen["units"][0] == seen["units"][1] > 0
    assert seen["estimate_backend"] == "frame-blend"
    # catalog: its files' type and its place in the order of a run's folders
    assert seen["artifact_type"] == "interpolated_video"
    assert seen["catalog_order"][-1] == "frame_interpolation"


def test_every_consumer_lists_exactly_the_stages_of_the_table(monkeypatch):
    from sparkle_motion_dagster.cli import doctor
    from sparkle_motion_dagster.panel import previews
    from sparkle_motion_dagster.resources import selection
    from sparkle_motion_dagster.insight import catalog, estimates

    with_resources = [row.key for row in stages.STAGES if row.resource]
    assert with_resources == list(stages.STAGE_KEYS)  # today every stage has an adapter
    monkeypatch.setattr(doctor, "_cuda", lambda: None)  # not what this checks; importing torch takes seconds
    assert list(doctor.diagnose(probe=False)["stages"]) == with_resources
    assert set(selection.embedded_resources()) == {"artifact_store"} | {row.resource for row in stages.STAGES}
    assert [folder for _, folder in previews.TABS] == [row.folder for row in stages.STAGES if row.tab]
    assert set(estimates.UNITS) == set(stages.STAGE_KEYS)
    assert [folder for folder in catalog.STAGE_ORDER if folder != stages.REQUEST_FOLDER] == [
        folder for row in stages.STAGES for folder in (row.folder, *row.work_folders)]
    assert set(catalog.PREVIEW_FIRST) <= {rule.artifact_type for row in stages.STAGES for rule in row.file_types}


def test_each_stage_names_the_files_it_reads_and_the_classes_it_uses():
    from sparkle_motion_dagster.resources import selection

    for row in stages.STAGES:
        if row.manifest:
            assert row.manifest in row.outputs, row.key
        for path in filter(None, (row.embedded, *row.adapters)):
            assert isinstance(selection.adapter_class(path), type), path
