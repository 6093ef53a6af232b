"""Retention (deleting whole film runs) and evacuation (verified, resumable copies) on real files."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
from helpers import small_sample

from sparkle_motion_dagster.cli import inspection as cli_inspect
from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.orchestration.runner import HOST_TAG, PID_TAG, RUN_TAG, film_run, submit_run
from sparkle_motion_dagster.orchestration.status import catalog_missing_stages, film_status
from sparkle_motion_dagster.lifecycle import evacuation, retention
from sparkle_motion_dagster.insight.catalog import Catalog
from sparkle_motion_dagster.lifecycle.evacuation import EVENT_TYPE, PARTIAL, ephemeral_root_warning, evacuate
from sparkle_motion_dagster.lifecycle.events import read_events, write_event
from sparkle_motion_dagster.store.locations import artifacts_root, ensure_dagster_home
from sparkle_motion_dagster.lifecycle.retention import apply_retention, parse_age, plan_retention, read_log
from sparkle_motion_dagster.store.run_files import submit_request
from sparkle_motion_dagster.store.storage import (
    ArtifactStore,
    UnknownRunError,
    atomic_write_json,
    new_run_id,
    sha256_file,
)
from sparkle_motion_dagster.stages import STAGE_KEYS

SAMPLE = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "rooftop_revelations.json"


@dataclass
class Filmed:
    base: Path
    instance: dg.DagsterInstance
    store: ArtifactStore
    run_id: str


@pytest.fixture(scope="module")
def filmed(tmp_path_factory):
    """One real film of the seed's sample, shared by the module. Tests that delete work on copies."""
    base = tmp_path_factory.mktemp("keep")
    state = base / "state"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARKLE_STATE_DIR", str(state))
        mp.setenv("DAGSTER_HOME", str(state / "dagster_home"))
        for key in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_INDEX", "QA_AUTOMATION_REMOVED"):
            mp.delenv(key, raising=False)
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
        store = ArtifactStore(artifacts_root())
        run_id = submit(store, instance)
        assert film_run(defs, instance, run_id, store=store).success
        yield Filmed(base, instance, store, run_id)
        instance.dispose()


def submit(store, instance) -> str:
    clips = defs.resources["clips"]
    return submit_run(store, instance, small_sample(), source="test", preview=True,
                      clip_model_ids=clips.model_ids, clip_backend=clips.backend)


def backdate(store: ArtifactStore, run_id: str, age: timedelta) -> None:
    request = store.read_request(run_id)
    request["submitted_at"] = (datetime.now(timezone.utc) - age).isoformat()
    atomic_write_json(store.request_path(run_id), request)


def copy_run(filmed: Filmed, age: timedelta) -> str:
    """A second film run with the filmed run's real files, registered and cataloged."""
    run_id = new_run_id()
    shutil.copytree(filmed.store.run_dir(filmed.run_id), filmed.store.run_dir(run_id),
                    ignore=shutil.ignore_patterns(".catalog", "events"))
    filmed.instance.add_dynamic_partitions("run_id", [run_id])
    backdate(filmed.store, run_id, age)
    catalog_missing_stages(Catalog(filmed.store.root), filmed.store, run_id)
    return run_id


def tree(folder: Path, skip=(".catalog",)) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder``."""
    found = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = Path(dirpath) / name
            found[path.relative_to(folder).as_posix()] = sha256_file(path)
    return found


def du(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


# --- ages --------------------------------------------------------------------------------

def test_parse_age():
    assert parse_age("7d") == timedelta(days=7)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age(" 30M ") == timedelta(minutes=30)
    assert parse_age("1.5d") == timedelta(hours=36)
    for bad in ("", "7", "d", "7w", "-1d", "0h", "7 days", None):
        with pytest.raises(ValueError, match="--older-than"):
            parse_age(bad)


# --- retention ----------------------------------------------------------------------------

@pytest.mark.slow
def test_retention_deletes_whole_old_runs_and_never_a_running_one(filmed, capsys):
    store, instance = filmed.store, filmed.instance
    old = copy_run(filmed, timedelta(days=10))
    busy = copy_run(filmed, timedelta(days=12))
    job = defs.resolve_job_def("film")
    active = instance.create_run_for_job(job, tags={"dagster/partition": busy}, status=dg.DagsterRunStatus.STARTED)
    fresh = submit(store, instance)  # submitted a minute ago, not filmed
    backdate(store, fresh, timedelta(minutes=1))
    backdate(store, filmed.run_id, timedelta(minutes=2))
    assert Catalog(store.root).artifacts(old)

    doomed = plan_retention(store, instance, older_than=timedelta(days=7))
    assert [d["run_id"] for d in doomed] == [old]
    assert doomed[0]["reason"] == "older than 7d" and doomed[0]["title"] == "Rooftop Revelations"
    assert doomed[0]["size_bytes"] == du(store.run_dir(old)) and doomed[0]["age"].startswith("10d")
    by_count = plan_retention(store, instance, keep_last=2)
    assert [d["run_id"] for d in by_count] == [old] and by_count[0]["reason"] == "not among the 2 newest runs"
    assert [d["run_id"] for d in plan_retention(store, instance, keep_last=1, older_than=timedelta(days=7))] == [old]
    with pytest.raises(ValueError, match="--keep-last"):
        plan_retention(store, instance, keep_last=-1)
    with pytest.raises(ValueError, match="--keep-last N or --older-than"):
        plan_retention(store, instance)

    # The command is a dry run unless --yes.
    assert cli_inspect.main(["retention", "--older-than", "7d"]) == 0
    assert "dry run: 1 run(s)" in capsys.readouterr().out
    assert store.run_dir(old).is_dir()

    assert cli_inspect.main(["retention", "--older-than", "7d", "--yes"]) == 0
    assert "deleted 1 run(s)" in capsys.readouterr().out
    assert not store.run_dir(old).exists()
    assert not instance.has_dynamic_partition("run_id", old)
    assert Catalog(store.root).artifacts(old) == []
    assert not list((store.root / "runs").glob(".deleting-*"))
    log = read_log(store.root)
    assert [(e["run_id"], e["reason"], e["size_bytes"]) for e in log] == [(old, "older than 7d", doomed[0]["size_bytes"])]

    # Everything else is untouched, including the old run that is still running.
    for run_id in (busy, fresh, filmed.run_id):
        assert store.run_dir(run_id).is_dir() and instance.has_dynamic_partition("run_id", run_id)
    assert Catalog(store.root).artifacts(busy)
    instance.report_run_canceled(active)
    report = apply_retention(store, instance, older_than=timedelta(days=7))
    assert [d["run_id"] for d in report["deleted"]] == [busy]
    assert not store.run_dir(busy).exists() and store.run_dir(filmed.run_id).is_dir()
    assert [e["run_id"] for e in read_log(store.root)] == [old, busy]


@pytest.fixture
def bare(tmp_path):
    """An ephemeral Dagster instance and an empty artifact root (nothing is filmed)."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance, ArtifactStore(tmp_path / "root")


def submit_only(store, instance, age=timedelta(days=10)) -> str:
    """A run submitted (request and partition) ``age`` ago and never filmed."""
    run_id = new_run_id()
    submit_request(store, run_id, document=json.loads(SAMPLE.read_text()), source="test", preview=True)
    instance.add_dynamic_partitions("run_id", [run_id])
    backdate(store, run_id, age)
    return run_id


def cli_dagster_run(instance, run_id, pid: int, **extra_tags):
    """A Dagster run of the film job created the way the CLI creates one, not started yet."""
    tags = {"dagster/partition": run_id, RUN_TAG: run_id, PID_TAG: str(pid), HOST_TAG: socket.gethostname(),
            **extra_tags}
    return instance.create_run_for_job(defs.resolve_job_def("film"), tags=tags, status=dg.DagsterRunStatus.NOT_STARTED)


def gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_retention_keeps_a_submitted_run_until_it_is_filmed_unless_asked(bare):
    instance, store = bare
    waiting = submit_only(store, instance)  # `submit`, with `run --run-id` still to come
    starting = submit_only(store, instance)
    cli_dagster_run(instance, starting, os.getpid())  # `run --plan` between creating its Dagster run and starting it
    assert plan_retention(store, instance, older_than=timedelta(days=7)) == []
    report = apply_retention(store, instance, keep_last=0, catalog=Catalog(store.root))
    assert report["deleted"] == [] and store.request_path(waiting).is_file()
    assert [d["run_id"] for d in plan_retention(store, instance, older_than=timedelta(days=7),
                                                include_unfilmed=True)] == [waiting]
    report = apply_retention(store, instance, keep_last=0, catalog=Catalog(store.root), include_unfilmed=True)
    assert [d["run_id"] for d in report["deleted"]] == [waiting] and not store.run_dir(waiting).exists()
    assert store.request_path(starting).is_file() and instance.has_dynamic_partition("run_id", starting)


def test_a_dry_run_counts_as_not_filmed_yet(bare):
    instance, store = bare
    planned = submit_only(store, instance)
    atomic_write_json(store.path(planned, "plan_intake", "plan_validation.json"), {"mode": "dry"})
    instance.create_run_for_job(defs.resolve_job_def("film"), tags={"dagster/partition": planned},
                                status=dg.DagsterRunStatus.SUCCESS)
    assert plan_retention(store, instance, keep_last=0) == []
    assert [d["run_id"] for d in plan_retention(store, instance, keep_last=0, include_unfilmed=True)] == [planned]
    atomic_write_json(store.path(planned, "plan_intake", "plan_validation.json"), {"mode": "run"})
    assert [d["run_id"] for d in plan_retention(store, instance, keep_last=0)] == [planned]


@pytest.mark.slow
def test_retention_racing_a_film_from_submit_to_start_never_deletes_it(isolated_state):
    """Retention runs over and over while `run --plan` submits and starts a film in another process."""
    ensure_dagster_home()
    env = {**os.environ, "SPARKLE_STATE_DIR": str(isolated_state), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    film = subprocess.Popen([sys.executable, "-m", "sparkle_motion_dagster.cli", "run", "--plan", str(SAMPLE),
                             "--preview", "--size", "160x90"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    store = ArtifactStore(artifacts_root())
    passes = 0
    with dg.DagsterInstance.get() as instance:
        while film.poll() is None and not instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS])):
            report = apply_retention(store, instance, keep_last=0, catalog=Catalog(store.root))
            assert report["deleted"] == []
            passes += 1
        output, _ = film.communicate(timeout=600)
    assert film.returncode == 0, output
    assert passes > 0 and len(store.run_ids()) == 1


def test_retention_command_include_unfilmed(isolated_state, capsys):
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        store = ArtifactStore(artifacts_root())
        waiting = submit_only(store, instance)
        assert cli_inspect.main(["retention", "--older-than", "7d", "--yes"]) == 0
        assert "nothing to delete" in capsys.readouterr().out and store.request_path(waiting).is_file()
        assert cli_inspect.main(["retention", "--older-than", "7d", "--include-unfilmed", "--yes"]) == 0
        assert "deleted 1 run(s)" in capsys.readouterr().out and not store.run_dir(waiting).exists()


def test_a_deletion_is_undone_when_a_dagster_run_appears_meanwhile(bare):
    instance, store = bare
    run_id = submit_only(store, instance)
    seen = retention._dagster_run_ids(instance, run_id)
    cli_dagster_run(instance, run_id, os.getpid())  # created after retention looked
    why = retention._delete_run(store, instance, Catalog(store.root), run_id, seen)
    assert "created" in why and store.request_path(run_id).is_file()
    assert instance.has_dynamic_partition("run_id", run_id)
    assert not list((store.root / "runs").glob(".deleting-*"))


def test_a_film_killed_before_its_dagster_run_started_reads_failed_and_can_be_deleted(bare):
    instance, store = bare
    killed = submit_only(store, instance)
    cli_dagster_run(instance, killed, gone_pid())
    status = film_status(instance, store, killed)
    assert status["status"] == "failed" and status["dagster_runs"][-1]["status"] == "ABANDONED"
    assert "gone" in status["detail"]
    alive = submit_only(store, instance)
    cli_dagster_run(instance, alive, os.getpid())
    assert film_status(instance, store, alive)["status"] == "queued"
    reexecuted = submit_only(store, instance)  # a UI re-execution inherits the pid of the CLI run it copies
    cli_dagster_run(instance, reexecuted, gone_pid(), **{"dagster/parent_run_id": "a-parent"})
    assert film_status(instance, store, reexecuted)["status"] == "queued"

    doomed = plan_retention(store, instance, older_than=timedelta(days=7))
    assert [d["run_id"] for d in doomed] == [killed]
    report = apply_retention(store, instance, older_than=timedelta(days=7), catalog=Catalog(store.root))
    assert [d["run_id"] for d in report["deleted"]] == [killed] and not store.run_dir(killed).exists()


def test_an_interrupted_deletion_is_finished_next_time(tmp_path):
    store = ArtifactStore(tmp_path)
    leftover = store.root / "runs" / ".deleting-run_0a1b2c3d-abc123"
    (leftover / "finalize").mkdir(parents=True)
    (leftover / "finalize" / "video_final.mp4").write_bytes(b"x" * 100)
    with dg.DagsterInstance.ephemeral() as instance:
        report = apply_retention(store, instance, keep_last=5, catalog=Catalog(tmp_path))
    assert report["deleted"] == [] and not leftover.exists()


# --- evacuation ----------------------------------------------------------------------------

def evacuation_events(store, run_id):
    return [e["payload"] for e in read_events(store.root, run_id, EVENT_TYPE)]


@pytest.mark.slow
def test_evacuation_copies_verifies_and_is_incremental(filmed, tmp_path):
    store, run_id = filmed.store, filmed.run_id
    dest = tmp_path / "drive" / "artifacts_fs"
    write_event(store.root, run_id, "note", {"text": "the run has an event log before it is evacuated"})
    seen = []
    report = evacuate(store, [run_id], dest, progress=seen.append)
    copy = dest / "runs" / run_id
    source_files = tree(store.run_dir(run_id))
    assert tree(copy) == source_files  # every file, byte for byte (the event log included)
    assert report["files_copied"] == len(source_files) and report["files_skipped"] == 0
    assert report["runs"][0]["status"] == "completed"
    assert seen[-1]["files_done"] == seen[-1]["files_total"] == len(source_files)
    assert seen[-1]["bytes_done"] == seen[-1]["bytes_total"] > 0
    events = evacuation_events(store, run_id)
    assert [e["status"] for e in events][-2:] == ["pending_copy", "completed"]
    assert events[-1] == {"artifacts_fs_root": str(store.root), "destination": str(copy), "backend": "filesystem",
                          "status": "completed", "files_copied": len(source_files), "files_skipped": 0,
                          "bytes_copied": report["bytes_copied"], "links_copied": 0, "left_out": [],
                          "missing_stages": [], "filming": None}
    assert [e["payload"]["status"] for e in read_events(dest, run_id, EVENT_TYPE)][-2:] == ["pending_copy", "completed"]

    # Again: only the event log changed. A damaged copy (same size) and a stray temp file are repaired.
    final = copy / "finalize" / "video_final.mp4"
    data = bytearray(final.read_bytes())
    data[1000] ^= 0xFF
    final.write_bytes(bytes(data))
    stray = copy / "finalize" / f"video_final.mp4{PARTIAL}999-abcdef"
    stray.write_bytes(b"half")
    again = evacuate(store, [run_id], dest)
    assert again["files_copied"] == 2 and again["files_skipped"] == len(source_files) - 2
    assert not stray.exists()
    assert sha256_file(final) == sha256_file(store.path(run_id, "finalize", "video_final.mp4"))
    assert tree(copy) == tree(store.run_dir(run_id))

    # The copy is itself an artifact root: the catalog can be rebuilt from it.
    assert Catalog(dest, dest / "index.duckdb").rebuild() > 0
    assert Catalog(dest, dest / "index.duckdb").artifacts(run_id, "finalize")


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_evacuation_is_finished_by_the_next_call(filmed, tmp_path):
    store, run_id = filmed.store, filmed.run_id
    dest = tmp_path / "backup"
    first = []

    def stop_after_five(info):
        first.append(info)
        if len(first) == 5:
            raise Interrupted("the VM is shutting down")

    with pytest.raises(Interrupted):
        evacuate(store, [run_id], dest, progress=stop_after_five)
    copy = dest / "runs" / run_id
    landed = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()}
    assert {info["path"] for info in first} <= landed
    assert not [p for p in landed if PARTIAL in p]
    for path in landed - {"events/events.jsonl"}:
        assert sha256_file(copy / path) == sha256_file(store.run_dir(run_id) / path)
    failed = evacuation_events(store, run_id)[-1]
    assert failed["status"] == "failed" and failed["files_copied"] == 5 and "VM is shutting down" in failed["error"]

    second = []
    report = evacuate(store, [run_id], dest, progress=second.append)
    assert report["runs"][0]["status"] == "completed"
    skipped = {info["path"] for info in second if info["action"] == "skipped"}
    assert {info["path"] for info in first} - {"events/events.jsonl"} <= skipped
    assert tree(copy) == tree(store.run_dir(run_id))
    assert [e["status"] for e in evacuation_events(store, run_id)][-4:] == [
        "pending_copy", "failed", "pending_copy", "completed"]


@pytest.mark.slow
def test_evacuate_command(filmed, tmp_path, capsys):
    dest = tmp_path / "drive"
    assert cli_inspect.main(["evacuate", "--all", "--to", str(dest)]) == 0
    captured = capsys.readouterr()
    assert "evacuating" in captured.err and "all verified" in captured.out
    for run_id in filmed.store.run_ids():
        assert (dest / "runs" / run_id / "request" / "plan_request.json").is_file()
    assert cli_inspect.main(["evacuate", filmed.run_id, "--all", "--to", str(dest)]) == 2
    assert cli_inspect.main(["evacuate", "--to", str(dest)]) == 2
    assert cli_inspect.main(["evacuate", "run_0badc0de", "--to", str(dest)]) == 2
    assert "run_0badc0de" in capsys.readouterr().err


def test_evacuation_copies_links_inside_the_run_as_links_and_leaves_out_the_rest(tmp_path):
    store = ArtifactStore(tmp_path / "root")
    run_id = "run_0a1b2c3d"
    run = store.run_dir(run_id)
    (run / "finalize").mkdir(parents=True)
    (run / "plan_intake").mkdir()
    (run / ".catalog").mkdir()
    (run / "finalize" / "video_final.mp4").write_bytes(b"the film")
    (run / "plan_intake" / "movie_plan.json").write_text('{"title": "inside"}')
    secret = tmp_path / "secret.txt"
    secret.write_text("CLASSIFIED: outside the run")
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "more.txt").write_text("CLASSIFIED: in an outside folder")
    (store.root / "index.duckdb").write_text("CLASSIFIED: the catalog")
    links = {
        "finalize/same.mp4": "video_final.mp4",
        "finalize/plan.json": str(run / "plan_intake" / "movie_plan.json"),  # absolute, inside the run
        "finalize/plans": "../plan_intake",  # a folder inside the run
        "finalize/via_folder.json": "plans/movie_plan.json",  # through another link, still inside
        "finalize/passwd": "/etc/passwd",
        "finalize/secret.txt": str(secret),
        "finalize/index.duckdb": "../../../index.duckdb",
        "finalize/outside_dir": str(tmp_path / "outside_dir"),
        "finalize/round.json": "../finalize/round.json",  # a loop on itself
        "finalize/ping": "pong",
        "finalize/pong": "ping",
        "finalize/gone.json": "missing.json",
        "finalize/spool": "../.catalog",
    }
    for name, text in links.items():
        (run / name).symlink_to(text)

    report = evacuate(store, [run_id], tmp_path / "dest")
    copy = tmp_path / "dest" / "runs" / run_id
    run_report = report["runs"][0]
    assert run_report["links_copied"] == 4
    # A run with only a plan and a final on disk is copied, but never called completed.
    assert (run_report["status"], run_report["missing_stages"]) == (
        "incomplete", [stage for stage in STAGE_KEYS if stage not in ("movie_plan", "video_final")])
    assert os.readlink(copy / "finalize" / "same.mp4") == "video_final.mp4"
    assert os.readlink(copy / "finalize" / "plan.json") == "../plan_intake/movie_plan.json"
    assert os.readlink(copy / "finalize" / "plans") == "../plan_intake"
    assert os.readlink(copy / "finalize" / "via_folder.json") == "../plan_intake/movie_plan.json"
    assert (copy / "finalize" / "same.mp4").read_bytes() == b"the film"
    assert json.loads((copy / "finalize" / "via_folder.json").read_text())["title"] == "inside"
    reasons = {entry["path"]: entry["reason"] for entry in run_report["left_out"]}
    outside = ("passwd", "secret.txt", "index.duckdb", "outside_dir")
    assert set(reasons) == {f"finalize/{name}" for name in (*outside, "round.json", "ping", "pong", "gone.json",
                                                                   "spool")}
    assert all("outside the run" in reasons[f"finalize/{name}"] for name in outside)
    assert all("loop" in reasons[f"finalize/{name}"] for name in ("round.json", "ping", "pong"))
    assert "does not exist" in reasons["finalize/gone.json"] and "not evacuated" in reasons["finalize/spool"]
    assert report["left_out"] == len(reasons)
    for dirpath, _, files in os.walk(copy):
        for name in files:
            path = Path(dirpath) / name
            assert not path.is_symlink() or name in ("same.mp4", "plan.json", "via_folder.json"), path
            if not path.is_symlink():
                assert b"CLASSIFIED" not in path.read_bytes() and b"root:" not in path.read_bytes(), path
    assert not (copy / "finalize" / "passwd").exists() and not (copy / "finalize" / "outside_dir").exists()

    again = evacuate(store, [run_id], tmp_path / "dest")["runs"][0]  # only the event log changed
    assert again["links_copied"] == 0 and again["files_copied"] == 1 and len(again["left_out"]) == len(reasons)


def test_evacuation_refuses_bad_destinations_and_runs(tmp_path):
    store = ArtifactStore(tmp_path / "root")
    store.run_dir("run_0a1b2c3d").mkdir(parents=True)
    for dest in (tmp_path / "root", tmp_path / "root" / "backup"):
        with pytest.raises(ValueError, match="--to: .* inside the artifact root"):
            evacuate(store, ["run_0a1b2c3d"], dest)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--to"):
        evacuate(store, ["run_0a1b2c3d"], tmp_path / "file")
    with pytest.raises(UnknownRunError, match="run_0badc0de"):
        evacuate(store, ["run_0badc0de"], tmp_path / "dest")
    with pytest.raises(ValueError, match="run_ids"):
        evacuate(store, [], tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_ephemeral_root_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("SPARKLE_EPHEMERAL_PREFIXES", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    # Off Colab nothing under /content or the temp folder warns, unless it is memory-backed.
    assert ephemeral_root_warning("/content/sparkle_motion/artifacts_fs") is None
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\ntmpfs /srv/ram tmpfs rw 0 0\n")
    assert evacuation.memory_mount(Path("/srv/ram/state/artifacts"), mounts=str(mounts)) == Path("/srv/ram")
    assert evacuation.memory_mount(Path("/srv/disk/artifacts"), mounts=str(mounts)) is None
    monkeypatch.setattr(evacuation, "memory_mount", lambda path: Path("/srv/ram"))
    warning = ephemeral_root_warning("/srv/ram/artifacts")
    assert "(/srv/ram)" in warning and "/content/drive" not in warning and "<a persistent folder>" in warning
    monkeypatch.setattr(evacuation, "memory_mount", lambda path: None)
    assert ephemeral_root_warning(Path(tempfile.gettempdir()) / "artifacts") is None
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")  # as a Colab VM sets it
    assert "ephemeral" in ephemeral_root_warning("/content/sparkle_motion/artifacts_fs")
    assert "--to /content/drive/MyDrive" in ephemeral_root_warning("/content/sparkle_motion/artifacts_fs")
    assert ephemeral_root_warning("/content/drive/MyDrive/sparkle_motion/artifacts_fs") is None
    assert "evacuate" in ephemeral_root_warning(Path(tempfile.gettempdir()) / "artifacts")
    assert ephemeral_root_warning("/contentious/artifacts") is None
    assert ephemeral_root_warning("/srv/sparkle/artifacts") is None
    monkeypatch.setenv("SPARKLE_EPHEMERAL_PREFIXES", "/srv/scratch, !/srv/scratch/keep")
    assert ephemeral_root_warning("/srv/scratch/artifacts") is not None
    assert ephemeral_root_warning("/srv/scratch/keep/artifacts") is None
    assert ephemeral_root_warning("/content/artifacts") is None
    monkeypatch.setenv("SPARKLE_EPHEMERAL_PREFIXES", "")
    assert ephemeral_root_warning(Path(tempfile.gettempdir()) / "artifacts") is None
