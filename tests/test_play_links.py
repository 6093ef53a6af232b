"""A play link made while the artifact service ran on one port plays after it moves to another:
the link's path under the artifact root stays, `sparkle-motion link` puts where the service runs
now in front of it (the address the running service records, or SPARKLE_ARTIFACTS_URL)."""

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from helpers import free_port, wait_for

from sparkle_motion_dagster.store.storage import ArtifactStore, new_run_id
from sparkle_motion_dagster.service.links import play_url

BIN = Path(sys.executable).parent


def test_a_link_made_on_one_port_plays_after_the_service_moves(tmp_path, monkeypatch):
    state = tmp_path / "state"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home")}
    for name in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_INDEX", "ARTIFACTS_FS_TOKEN", "SPARKLE_ARTIFACTS_URL"):
        env.pop(name, None)
    subprocess.run([str(BIN / "sparkle-motion"), "paths", "--create"], env=env, capture_output=True, check=True)
    store = ArtifactStore(state / "artifacts")
    film = store.path(new_run_id(), "finalize", "video_final.mp4")
    film.parent.mkdir(parents=True)
    film.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)

    port_a, port_b = free_port(), free_port()
    monkeypatch.setenv("SPARKLE_ARTIFACTS_URL", f"http://127.0.0.1:{port_a}")
    old_link = play_url(store.root, film)  # as the asset's materialization recorded it
    assert old_link.startswith(f"http://127.0.0.1:{port_a}/files/runs/")

    service = subprocess.Popen([str(BIN / "sparkle-motion"), "serve-artifacts", "--port", str(port_b)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def link(target: str, **extra: str) -> str:
        done = subprocess.run([str(BIN / "sparkle-motion"), "link", target], env={**env, **extra},
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    try:
        wait_for((store.root / ".artifact_service.json").exists, "the service to record where it runs")

        new_link = link(old_link)
        assert new_link == old_link.replace(f":{port_a}/", f":{port_b}/")
        assert link(str(film)) == link(film.relative_to(store.root).as_posix()) == new_link
        # SPARKLE_ARTIFACTS_URL, where it is set, says where the service is (behind a proxy, say).
        assert link(old_link, SPARKLE_ARTIFACTS_URL="http://films.example:8080").startswith(
            "http://films.example:8080/files/runs/")

        def played() -> bytes | None:
            try:
                with urllib.request.urlopen(new_link, timeout=5) as response:
                    return response.read()
            except OSError:
                return None

        assert wait_for(played, "the moved service to play the link") == film.read_bytes()
    finally:
        service.terminate()
        service.wait(timeout=30)
    # A stopped service is not where links go: without it the link names the default address.
    assert link(old_link).startswith("http://127.0.0.1:7077/files/runs/")
