import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch

SAMPLE = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "rooftop_revelations.json"


@pytest.fixture
def sample_envelope() -> dict:
    return json.loads(SAMPLE.read_text())


@pytest.fixture
def sample_plan(sample_envelope) -> dict:
    return sample_envelope["validated_plan"]


@pytest.fixture
def isolated_state(tmp_path, monkeypatch) -> Path:
    """A private state folder, DAGSTER_HOME and artifact root for one test."""
    state = tmp_path / "state"
    monkeypatch.setenv("SPARKLE_STATE_DIR", str(state))
    monkeypatch.delenv("ARTIFACTS_FS_ROOT", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    return state


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An artifact store in the test's own folder (and ARTIFACTS_FS_ROOT pointing at it)."""
    from sparkle_motion_dagster.store.storage import ArtifactStore

    monkeypatch.setenv("ARTIFACTS_FS_ROOT", str(tmp_path / "artifacts"))
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def instance():
    """An ephemeral Dagster instance."""
    import dagster as dg

    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads and lose a lot to contention on a shared CPU
    (this also covers a torch imported before OMP_WAIT_POLICY was set)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
