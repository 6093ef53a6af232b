"""Provenance: every file a film publishes has a record of what made it, from which files."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LANTERN = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "lantern_walk.json"


def cli(*args, cwd: Path):
    env = {**os.environ, "SPARKLE_STATE_DIR": str(cwd / "state")}
    env.pop("ARTIFACTS_FS_ROOT", None)
    env.pop("DAGSTER_HOME", None)
    result = subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.cli.main", *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_id_of(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("run_id:"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_every_file_of_a_film_has_a_record_and_the_final_cut_reaches_every_input(tmp_path, monkeypatch):
    run_id = run_id_of(cli("run", "--plan", str(LANTERN), "--size", "160x90", cwd=tmp_path))
    cli("regenerate", run_id, "--shot", "shot_002", "--seed", "77", cwd=tmp_path)
    run_dir = tmp_path / "state" / "artifacts" / "runs" / run_id

    payload = json.loads(cli("provenance", run_id, "--json", cwd=tmp_path))
    assert payload["run_id"] == run_id
    assert (run_dir / ".provenance" / "finalize" / "alignment_map.json").is_file()
    assert not list(run_dir.rglob("*.json.json"))  # a JSON file's record keeps its own name
    records = {r["path"]: r for r in payload["records"]}
    from sparkle_motion_dagster.insight.catalog import Catalog

    artifacts = Catalog(tmp_path / "state" / "artifacts").artifacts(run_id)
    assert len(artifacts) >= 20
    for artifact in artifacts:  # every catalogued file, with its current contents and its inputs
        relative = Path(artifact["local_path"]).relative_to(run_dir).as_posix()
        record = records[relative]
        assert record["sha256"] == sha256(run_dir / relative) == artifact["sha256"]
        assert record["size_bytes"] == artifact["size_bytes"]
        assert record["inputs"], f"{relative} has no inputs"
        for source in record["inputs"]:
            assert source["sha256"] == sha256(run_dir / source["path"])
        assert record["versions"]["dagster"] and record["versions"]["ffmpeg"] and record["dagster_run_id"]
        assert artifact["metadata"]["provenance"]["sha256"] == record["sha256"]  # kept in the catalog too

    clip = records["video_clips/shot_002.mp4"]
    assert clip["seed"] == 77 and clip["backend"] == "animatic" and clip["shot_id"] == "shot_002"
    assert {i["path"] for i in clip["inputs"]} == {"base_images/frame_001.png", "base_images/frame_002.png"}
    assert records["video_clips/shot_001.mp4"]["seed"] == 4101
    assert records["base_images/frame_000.png"]["prompt"].startswith("A dark coastal path")
    assert records["base_images/frame_000.png"]["settings"]["size"] == [160, 90]
    assert records["dialogue_audio/line_000.wav"]["prompt"] == "Is it far?"

    lineage = json.loads(cli("provenance", run_id, "--file", "finalize/video_final.mp4", "--json",
                             cwd=tmp_path))["records"]
    reached = {r["path"] for r in lineage}
    assert lineage[0]["path"] == "finalize/video_final.mp4"
    assert {"assembly/video_raw_concat.mp4", "dialogue_audio/tts_timeline.wav", "video_clips/shot_001.mp4",
            "video_clips/shot_002.mp4", "base_images/frame_000.png", "base_images/frame_001.png",
            "base_images/frame_002.png", "dialogue_audio/line_000.wav", "dialogue_audio/line_001.wav",
            "plan_intake/movie_plan.json"} <= reached
    human = cli("provenance", run_id, "--file", str(run_dir / "finalize" / "video_final.mp4"), cwd=tmp_path)
    assert "video_clips/shot_002.mp4" in human and "77" in human

    # The Dagster UI shows each materialization's lineage summary in its metadata.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "state" / "dagster_home"))
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("video_clips"))
    summary = event.asset_materialization.metadata["provenance"].value
    assert summary["seeds"]["shot_002"] == 77 and summary["backends"] == ["animatic"]
    assert "shot_002.mp4" in event.asset_materialization.metadata["lineage"].value


def test_records_of_json_files_have_one_extension_and_older_names_are_still_read(tmp_path):
    from sparkle_motion_dagster.insight import provenance
    from sparkle_motion_dagster.store.storage import ArtifactStore

    store = ArtifactStore(tmp_path)
    run_id = "run_0a0b0c0d"
    made = store.run_dir(run_id) / "finalize" / "alignment_map.json"
    made.parent.mkdir(parents=True)
    made.write_text("{}")
    record = provenance.build_record(made, store=store, run_id=run_id, stage="finalize")
    provenance.write_record(store, record)
    folder = store.run_dir(run_id) / ".provenance" / "finalize"
    assert [p.name for p in folder.iterdir()] == ["alignment_map.json"]

    (folder / "alignment_map.json").rename(folder / "alignment_map.json.json")  # what older versions wrote
    assert provenance.record_path(store, run_id, "finalize", made).name == "alignment_map.json.json"
    assert [r["path"] for r in provenance.read_records(store, run_id)] == ["finalize/alignment_map.json"]
    provenance.write_record(store, record)  # written again: under the new name, read once
    assert provenance.record_path(store, run_id, "finalize", made).name == "alignment_map.json"
    assert [r["path"] for r in provenance.read_records(store, run_id)] == ["finalize/alignment_map.json"]


def _tiny_sdxl_folder(folder: Path) -> Path:
    """A diffusers-layout SDXL folder with small weight files (what the adapter resolves; never loaded)."""
    import numpy as np
    from safetensors.numpy import save_file

    components = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    (folder).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionXLPipeline", **{c: ["diffusers", "X"] for c in components}}))
    for index, component in enumerate(components):
        (folder / component).mkdir()
        (folder / component / "config.json").write_text(json.dumps({"layer": index}))
        if component in ("unet", "vae", "text_encoder", "text_encoder_2"):
            save_file({"weight": np.full((4, 4), index, dtype=np.float32)},
                      str(folder / component / "model.safetensors"))
    return folder


def test_weights_digest_follows_the_weights_not_the_folder_name(tmp_path, isolated_state, monkeypatch):
    pytest.importorskip("diffusers")  # the models extra: the SDXL adapter resolves its folder with it
    from sparkle_motion_dagster.insight import provenance

    monkeypatch.setattr(provenance, "REMEMBERED_BYTES", 1)  # remember even these small weights on disk
    import numpy as np
    from safetensors.numpy import save_file

    from sparkle_motion_dagster.resources.keyframes.sdxl import SdxlKeyframes
    from sparkle_motion_dagster.insight.provenance import weights_digest

    folder = _tiny_sdxl_folder(tmp_path / "sdxl")
    described = SdxlKeyframes(model=str(folder), device="cpu").provenance()
    assert described["backend"] == "sdxl" and described["device"] == "cpu" and described["dtype"] == "float32"
    assert described["settings"]["steps"] == 30 and described["local_path"] == str(folder.resolve())
    first = described["weights_digest"]
    assert first == weights_digest(folder) and first.startswith("sha256:")

    renamed = tmp_path / "another-name"
    shutil.move(folder, renamed)
    assert weights_digest(renamed) == first  # the folder's name is not the weights

    # A new process reads big files once per change: the digests are remembered in the state folder.
    assert (isolated_state / "cache" / "file_digests.json").is_file()
    provenance._DIGESTS.clear()
    with monkeypatch.context() as patched:
        patched.setattr(provenance, "sha256_file", lambda path: pytest.fail(f"read {path} again"))
        assert weights_digest(renamed) == first

    save_file({"weight": np.full((4, 4), 9, dtype=np.float32)}, str(renamed / "unet" / "model.safetensors"))
    changed = weights_digest(renamed)
    assert changed != first  # same name and size, other contents
    assert SdxlKeyframes(model=str(renamed), device="cpu").provenance()["weights_digest"] == changed
