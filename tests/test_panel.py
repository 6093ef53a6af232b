"""The notebook control panel against real services: `dagster dev` (webserver and daemon) and
the artifact service (with a token) on loopback, a fresh state folder, the panel driven through
its controls as a person drives them."""

import json
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port

pytest.importorskip("ipywidgets", reason="needs the notebook extra: pip install -e '.[notebook]'")

from sparkle_motion_dagster.panel import create_control_panel  # noqa: E402
from sparkle_motion_dagster.panel.services import start_services  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "panel-test-token-0123456789"


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    state = tmp_path_factory.mktemp("panel") / "state"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("ARTIFACTS_FS_ROOT", "ARTIFACTS_FS_INDEX", "ARTIFACTS_FS_TOKEN", "QA_AUTOMATION_REMOVED",
                     "SPARKLE_DAGSTER_URL", "SPARKLE_ARTIFACTS_URL"):
            mp.delenv(name, raising=False)
        running = start_services(state=state, dagster_port=free_port(), artifacts_port=free_port(), token=TOKEN,
                                 workspace=ROOT / "workspace.yaml")
        try:
            yield running
        finally:
            running.stop()


def until(panel, wanted, attempts=1500):
    """Poll the panel (as its Poll Status task does) until ``wanted(status)``; bounded by attempts."""
    for _ in range(attempts):
        status = panel.refresh()
        if wanted(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting; last status {status['status']}: {status.get('detail')}")


def ended(status):
    return status["status"] not in ("submitted", "queued", "running", "paused")


def clip_hashes(panel):
    return {r["shot_id"]: r["sha256"] for r in panel.artifacts["artifacts"] if r["artifact_type"] == "shot_video"}


def fetch(url, headers=None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read()


@pytest.fixture(scope="module")
def filmed(services):
    """A plan generated from a prompt in the panel, reviewed, then filmed from the panel."""
    panel = create_control_panel(services.endpoints, size="96x64")
    assert panel.pause.disabled and panel.run_production.disabled  # nothing to pause or film yet
    panel.check_health.click()
    assert "filesystem backend" in panel.backend.value and "(token auth) · ready" in panel.backend.value
    panel.prompt.value = "A lantern keeper walks a foggy wood and meets a fox"
    panel.title.value = "Lantern and Fox"
    panel.generate_plan.click()
    return panel


def test_generate_plan_fills_the_uri_summary_and_review(filmed):
    panel = filmed
    run_id = panel.run_id.value
    assert run_id.startswith("run_")
    assert f"/files/runs/{run_id}/plan_intake/plan_artifact.json?expires=" in panel.plan_uri.value
    assert "plan_id <code>plan_" in panel.plan_details.value and "shots" in panel.plan_details.value
    assert panel.plan_review.value.count("<tr data-shot=") == len(panel.plan_document["validated_plan"]["shots"])
    assert "Dialogue timeline" in panel.plan_review.value and "Render profile" in panel.plan_review.value
    status = panel.refresh()
    assert status["status"] == "planned", status["detail"]
    assert not panel.run_production.disabled
    # The dry run's report, before paying for a render: warnings and the estimated cost per stage.
    assert set(panel.plan_report_data["estimate"]["stages"]) == {
        "movie_plan", "dialogue_audio", "base_images", "video_clips", "video_raw_concat", "video_final"}
    assert "<b>Estimate</b>" in panel.plan_report.value and "<b>Warnings</b>" in panel.plan_report.value


def test_an_invalid_inline_edit_is_refused_naming_the_field(filmed):
    panel = filmed
    edited = json.loads(panel.plan_editor.value)
    edited["validated_plan"]["shots"][0]["duration_sec"] = -2
    panel.plan_editor.value = json.dumps(edited)
    panel.send_inline.value = True
    run_id = panel.run_id.value
    panel.run_production.click()
    assert "validated_plan.shots[0].duration_sec" in panel.plan_details.value
    assert "refused" in panel.responses.value
    assert panel.run_id.value == run_id and panel.refresh()["status"] == "planned"  # nothing was sent
    panel.send_inline.value = False


def test_run_production_stop_banner_and_resume_from_stage(filmed):
    panel = filmed
    run_id = panel.run_id.value
    panel.run_production.click()
    assert panel.run_id.value == run_id  # the same run_id Generate Plan made
    panel.pause.click()  # so that the stop below lands at a known place: the gate the run holds at
    until(panel, lambda s: s["status"] == "held" and s["hold"])  # its Dagster run ended there
    panel.stop.click()
    status = until(panel, lambda s: s["status"] == "stopped" and s["dagster_runs"][-1]["status"] == "FAILURE")
    assert "sm-banner-stopped" in panel.status_banner.value and "Resume from stage" in panel.status_banner.value
    assert not panel.resume_from_stage.disabled and panel.pause.disabled
    assert "no video_final" in panel.final_video.value and not panel.resume_final.disabled
    panel.resume_stage.value = next(s["asset"] for s in status["stages"] if s["status"] != "succeeded")
    panel.resume_from_stage.click()
    status = until(panel, ended)
    assert status["status"] == "succeeded", status["detail"]
    assert "sm-banner-stopped" not in panel.status_banner.value


def test_the_finished_film_shows_its_stages_previews_and_video(filmed):
    panel = filmed
    assert panel.refresh()["status"] == "succeeded"
    table = panel.stage_table.value
    for stage in ("movie_plan", "dialogue_audio", "base_images", "video_clips", "video_raw_concat", "video_final"):
        assert f'data-stage="{stage}" data-status="succeeded"' in table
    assert "audio clips · " in table  # the seed's badges
    shots = len(panel.plan_document["validated_plan"]["shots"])
    previews = panel.stage_previews
    assert previews["base_images"].value.count("<img ") == shots + 1
    assert previews["dialogue_audio"].value.count("<audio ") >= 2  # lines and the stitched timeline
    assert previews["video_clips"].value.count("<video ") == shots
    assert "<video " in previews["assembly"].value and "<video " in previews["finalize"].value
    assert panel.pause.disabled and panel.stop.disabled and not panel.approve.disabled
    assert "Manual review" in panel.review_banner.value
    # The final video plays from its signed URL, without the bearer header, with ranges.
    src = panel.final_video.value.split('src="')[1].split('"')[0].replace("&amp;", "&")
    status_code, content_type, body = fetch(src, {"Range": "bytes=0-1023"})
    assert (status_code, content_type, len(body)) == (206, "video/mp4", 1024)
    panel.download.click()
    assert "video_final.mp4" in panel.download_link.value


def test_approve_from_the_panel_passes_the_review_gate(filmed):
    panel = filmed
    panel.reviewer.value, panel.review_notes.value = "ana", "continuity checked"
    panel.approve.click()
    assert panel.review_gate_passed is True, panel.responses.value
    assert panel.refresh()["review"]["status"] == "approved"


def test_regenerate_one_shot_with_a_pause_on_the_way(filmed):
    panel = filmed
    panel.refresh()
    before = clip_hashes(panel)
    shot = sorted(before)[1]
    panel.shot.value = shot
    panel.regen_seed.value = "4242"
    panel.regenerate_clip.click()
    assert "regenerating the clip" in panel.responses.value
    panel.pause.click()
    status = until(panel, lambda s: s["status"] == "held" and s["hold"])  # its Dagster run ended, keeping no GPU
    assert status["dagster_runs"][-1]["status"] == "FAILURE"
    assert "holding before" in panel.status_banner.value
    assert panel.pause.disabled and not panel.resume.disabled
    panel.resume.click()
    status = until(panel, lambda s: ended(s) and s["dagster_runs"][-1]["status"] in ("SUCCESS", "FAILURE"))
    assert status["status"] == "succeeded", status["detail"]
    after = clip_hashes(panel)
    assert [s for s in before if before[s] != after[s]] == [shot]  # only that shot's clip changed
    assert status["regenerations"] == [{"shot_id": shot, "count": 1, "note": f"{shot} regenerations: 1"}]
    assert status["review"]["status"] == "pending"  # the approval judged the old final video


def test_a_valid_inline_edit_is_sent_as_a_new_run_in_dry_mode(filmed, services):
    panel = filmed
    filmed_run = panel.run_id.value
    edited = json.loads(json.dumps(panel.plan_document))  # the plan as loaded, not the refused edit
    edited["validated_plan"]["title"] = "Lantern and Fox, edited"
    panel.plan_editor.value = json.dumps(edited)
    panel.send_inline.value, panel.mode.value = True, "dry"
    panel.run_production.click()
    run_id = panel.run_id.value
    assert run_id != filmed_run, panel.responses.value
    status = until(panel, ended)
    assert status["status"] == "planned" and status["title"] == "Lantern and Fox, edited", status["detail"]
    from sparkle_motion_dagster.runs.storage import ArtifactStore

    request = json.loads(ArtifactStore(services.state / "artifacts").request_path(run_id).read_text())
    assert request["source"] == "panel:inline" and request["document"]["validated_plan"]["title"].endswith("edited")


def test_the_panel_imports_no_dagster_and_the_core_imports_no_widgets():
    import subprocess
    import sys

    panel = ("import sys; import sparkle_motion_dagster.panel as p; p.create_control_panel(); "
             "sys.exit('dagster' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", panel]).returncode == 0
    # Without the notebook extra: ipywidgets cannot be imported, the package and its CLI still load.
    core = ("import sys; sys.modules['ipywidgets'] = None; import sparkle_motion_dagster.definitions, "
            "sparkle_motion_dagster.cli.main, sparkle_motion_dagster.service.app")
    assert subprocess.run([sys.executable, "-c", core]).returncode == 0
