"""Ids are checked with a full match: a trailing newline is not part of an id."""

import pytest
from fastapi.testclient import TestClient

from sparkle_motion_dagster.film.plan import id_problem
from sparkle_motion_dagster.store.storage import RUN_ID_PATTERN, ArtifactStore, UnsafeIdError, check_id, check_run_id
from sparkle_motion_dagster.service.app import create_app


@pytest.mark.parametrize("value", ["shot_001\n", "frame_001\n", "run_1234abcd\n", "a\nb", "\n"])
def test_a_newline_is_never_part_of_an_id(value):
    assert id_problem(value)
    with pytest.raises(UnsafeIdError):
        check_id(value, field="file name")


@pytest.mark.parametrize("value", ["run_1234abcd\n", "run_1234abcd\n\n", "xrun_1234abcd", "run_1234abcdz"])
def test_run_ids_are_matched_whole(value):
    assert RUN_ID_PATTERN.match(value) is None and RUN_ID_PATTERN.fullmatch(value) is None
    with pytest.raises(UnsafeIdError):
        check_run_id(value)


def test_run_folders_with_a_newline_are_not_runs(tmp_path):
    (tmp_path / "runs" / "run_1234abcd").mkdir(parents=True)
    (tmp_path / "runs" / "run_5678abcd\n").mkdir()
    store = ArtifactStore(tmp_path)
    assert store.run_ids() == ["run_1234abcd"]
    with pytest.raises(UnsafeIdError):
        store.run_dir("run_5678abcd\n")


def test_the_service_refuses_ids_with_a_newline(tmp_path):
    client = TestClient(create_app(tmp_path, lambda: None))
    for route, params in (("/status", {"run_id": "run_1234abcd\n"}),
                          ("/artifacts", {"run_id": "run_1234abcd\n"}),
                          ("/artifacts", {"run_id": "run_1234abcd", "stage": "video_clips\n"})):
        response = client.get(route, params=params)
        assert response.status_code == 400 and "must be 1-128 characters" in response.json()["detail"]
