"""The final video plays from the Dagster UI: a real Chromium renders the asset page of
`video_final` served by `dagster dev`, and its play link is served by the artifact service."""

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import dagster_dev, free_port, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE = ROOT / "sparkle_motion_dagster" / "samples" / "lantern_walk.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As a closed network wants it: no background connections, no first-run work, no sandbox as root.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=30000", "--window-size=1400,1100"]


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install -y chromium chromium-driver")
def test_the_video_final_page_shows_a_link_that_plays_the_film(tmp_path):
    state = tmp_path / "state"
    service_port = free_port()
    service_url = f"http://127.0.0.1:{service_port}"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home"),
           "SPARKLE_ARTIFACTS_URL": service_url}
    for name in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_INDEX", "ARTIFACTS_FS_TOKEN"):
        env.pop(name, None)
    filmed = subprocess.run([str(BIN / "sparkle-motion"), "run", "--plan", str(SAMPLE), "--size", "160x90"],
                            env=env, capture_output=True, text=True, cwd=tmp_path)
    assert filmed.returncode == 0, filmed.stderr
    run_id = next(line.split()[1] for line in filmed.stdout.splitlines() if line.startswith("run_id:"))
    final = state / "artifacts" / "runs" / run_id / "finalize" / "video_final.mp4"
    play = f"{service_url}/files/runs/{run_id}/finalize/video_final.mp4"

    service = subprocess.Popen([str(BIN / "sparkle-motion"), "serve-artifacts", "--port", str(service_port)],
                               env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with dagster_dev(env, tmp_path) as (_, ui):
            page = f"{ui}/assets/video_final?view=partitions&partition={run_id}"
            dom = wait_for(lambda: (out := chromium(tmp_path / "dom", "--dump-dom", page).stdout)
                           and f'href="{play}"' in out and out, "the asset page to show the play link", attempts=6,
                           interval=2)
            assert "video_final" in dom
            shot = tmp_path / "video_final_page.png"
            chromium(tmp_path / "shot", f"--screenshot={shot}", page)
            assert shot.stat().st_size > 20_000  # a rendered page, not a blank one

        # The link plays: the service answers a player's range request with the file's bytes.
        def fetch():
            try:
                request = urllib.request.Request(play, headers={"Range": "bytes=0-1023"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, response.headers["Content-Type"], response.read()
            except OSError:
                return None

        status, content_type, body = wait_for(fetch, "the artifact service")
        assert (status, content_type) == (206, "video/mp4")
        assert body == final.read_bytes()[:1024]
    finally:
        service.terminate()
        service.wait(timeout=30)
