import subprocess
import sys

import dagster as dg

from sparkle_motion_dagster.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_graph_shape_is_what_we_expect():
    """A snapshot of the asset graph: changing it should be a deliberate act."""
    graph = {key.to_user_string(): sorted(dep.to_user_string() for dep in deps)
             for key, deps in defs.resolve_asset_graph().asset_dep_graph["upstream"].items()}
    assert graph == {
        "movie_plan": [],
        "dialogue_audio": ["movie_plan"],
        "character_refs": ["movie_plan"],
        "base_images": ["character_refs", "movie_plan"],
        "video_clips": ["base_images", "movie_plan"],
        "video_raw_concat": ["video_clips"],
        "video_final": ["dialogue_audio", "video_raw_concat"],
    }
    assert defs.resolve_job_def("film").partitions_def.name == "run_id"
    for spec in defs.resolve_all_asset_specs():
        assert spec.description, f"{spec.key} needs a docstring"
        assert spec.partitions_def is not None


def test_loading_definitions_imports_no_model_libraries():
    # DuckDB too: assets only spool catalog records, and its import alone costs ~0.3 s per run.
    code = (
        "import sys, sparkle_motion_dagster.definitions\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'duckdb') if m in sys.modules]\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
