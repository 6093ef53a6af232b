"""A person's view of the notebook: Voilà renders it on loopback, a real headless Chromium (driven
by Selenium through Debian's chromium-driver) clicks Generate Plan and Run Production, and the
page ends with the stage rows and a playing final video."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, wait_for
from notebook_run import NOTEBOOK, stop_leftover_services, with_parameters
from sparkle_motion_dagster.stages import STAGE_KEYS

nbformat = pytest.importorskip("nbformat", reason="needs the notebook extra: pip install -e '.[notebook]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install -e '.[test]'")

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
VOILA = Path(sys.executable).parent / "voila"
# As a closed network wants it: no background connections, no first-run work, no sandbox as root.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,3000"]
LABELS = ["Generate Plan", "Load Plan JSON", "Run Production", "Pause", "Resume", "Stop", "Poll Status",
          "Refresh Artifacts", "Resume from stage", "Regenerate clip", "Regenerate keyframes", "Approve", "Reject",
          "Skip", "Download"]


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs Chromium and its driver: apt-get install -y chromium chromium-driver")
def test_voila_page_makes_a_film_from_two_clicks(tmp_path, monkeypatch):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    for name in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_TOKEN", "SPARKLE_DAGSTER_URL", "SPARKLE_ARTIFACTS_URL",
                 "QA_AUTOMATION_REMOVED"):
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / "state"
    page = tmp_path / "sparkle_motion.ipynb"
    nbformat.write(with_parameters(nbformat.read(NOTEBOOK, as_version=4), STATE_DIR=str(state), SIZE="96x64",
                                   DAGSTER_PORT=free_port(), ARTIFACTS_PORT=free_port(),
                                   TOKEN="browser-token-0123456789"), page)
    port = free_port()
    voila = subprocess.Popen([str(VOILA), str(page), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
                              "--show_tracebacks=True"], cwd=tmp_path, stdout=open(tmp_path / "voila.log", "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    options = Options()
    options.binary_location = CHROMIUM
    # Voilà streams the page while the notebook runs (it starts services): do not wait for the load
    # inside driver.get, whose own limit would fail a slow machine; the waits below are bounded.
    options.page_load_strategy = "none"
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = None
    shot = tmp_path / "notebook_panel.png"
    try:
        # Only the port: a GET of the page would run the notebook in a kernel of its own, and two
        # kernels would start the services twice on one state folder.
        wait_for(lambda: _listens(port), "Voilà", attempts=600, interval=0.2)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.get(f"http://127.0.0.1:{port}/")

        def button(label):
            return driver.execute_script(
                "return [...document.querySelectorAll('button')].find(b => b.textContent.trim() === arguments[0])"
                " || null", label)

        wait_for(lambda: button("Generate Plan"), "the control panel to render", attempts=1500, interval=0.2)
        # Voilà renders cells as they run: wait for the last one, so the kernel is free for the clicks.
        wait_for(lambda: "WARNING: the artifact root" in driver.page_source
                 or "The artifacts live on persistent storage" in driver.page_source, "the notebook's last cell",
                 attempts=1500, interval=0.2)
        for label in LABELS:
            assert button(label) is not None, f"no {label!r} button"
        assert "Send plan inline" in driver.page_source and "Auto-fetch artifacts" in driver.page_source
        button("Generate Plan").click()
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".sm-plan-summary"), "the plan summary",
                 attempts=1500, interval=0.2)
        wait_for(lambda: button("Run Production").is_enabled(), "Run Production to be enabled", attempts=300)
        button("Run Production").click()
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "video.sm-final"), "the final video",
                 attempts=3000, interval=0.2)
        stages = driver.execute_script("return [...document.querySelectorAll('tr.sm-stage')].map(r => r.dataset.stage)")
        assert stages == list(STAGE_KEYS)
        wait_for(lambda: driver.execute_script(
            "const rows = [...document.querySelectorAll('tr.sm-stage')];"
            f"return rows.length === {len(STAGE_KEYS)} && rows.every(r => r.dataset.status === 'succeeded');"),
            "every stage row",
            attempts=300)
        src = driver.execute_script("const v = document.querySelector('video.sm-final'); v.scrollIntoView(); "
                                    "return v.src;")
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 20_000
        # The video's source is the artifact service's signed link: MP4, with ranges.
        with urllib.request.urlopen(urllib.request.Request(src, headers={"Range": "bytes=0-1023"}), timeout=30) as r:
            assert (r.status, r.headers["Content-Type"], len(r.read())) == (206, "video/mp4", 1024)
        with urllib.request.urlopen(src, timeout=30) as r:
            assert r.headers["Content-Type"] == "video/mp4" and r.read(4)
    except AssertionError:
        if driver is not None:  # what the page showed, for whoever reads the failure
            driver.save_screenshot(str(shot))
            print(f"screenshot: {shot}")
            print("responses:", [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".sm-response")])
        raise
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(voila.pid, signal.SIGTERM)
        try:
            voila.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(voila.pid, signal.SIGKILL)
        stop_leftover_services(state)


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False
