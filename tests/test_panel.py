"""The notebook control panel against real services: `dagster dev` (webserver and daemon) and
the artifact service (with a token) on loopback, a fresh state folder, the panel driven through
its controls as a person drives them."""

import copy
import json
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import free_port

pytest.importorskip("ipywidgets", reason="needs the notebook extra: pip install -e '.[notebook]'")

from sparkle_motion_dagster.panel import create_control_panel  # noqa: E402
from sparkle_motion_dagster.panel.services import start_services  # noqa: E402
from sparkle_motion_dagster.stages import STAGE_KEYS  # noqa: E402

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


def shown(panel, status=None) -> SimpleNamespace:
    """What the panel shows at one moment: every control's value and whether it is enabled, the
    preview panes, and what it has loaded. A state's fixture keeps this record, so a test reads the
    state it names whatever ran before it."""
    import ipywidgets

    controls = {name: SimpleNamespace(value=getattr(widget, "value", None), disabled=getattr(widget, "disabled", None),
                                      display=getattr(getattr(widget, "layout", None), "display", None))
                for name, widget in vars(panel).items() if isinstance(widget, ipywidgets.Widget)}
    return SimpleNamespace(
        **controls, status=status,
        stage_previews={folder: SimpleNamespace(value=pane.value) for folder, pane in panel.stage_previews.items()},
        **{name: copy.deepcopy(getattr(panel, name, None))
           for name in ("plan_document", "plan_report_data", "artifacts", "review_gate_passed")})


@pytest.fixture(scope="module")
def planned(services):
    """A plan generated from a prompt in the panel: the panel before, and once the plan is ready."""
    panel = create_control_panel(services.endpoints, size="96x64")
    before = shown(panel)
    panel.check_health.click()
    panel.prompt.value = "A lantern keeper walks a foggy wood and meets a fox"
    panel.title.value = "Lantern and Fox"
    panel.generate_plan.click()
    return panel, before, shown(panel, panel.refresh())


@pytest.fixture
def loaded(services, planned):
    """A fresh panel with the generated plan loaded from its Plan URI (no run of its own yet)."""
    _, _, ready = planned
    panel = create_control_panel(services.endpoints, size="96x64")
    panel.plan_uri.value = ready.plan_uri.value
    panel.load_plan.click()
    assert panel.plan_document == ready.plan_document, panel.responses.value
    return panel


@pytest.fixture(scope="module")
def stopped(planned):
    """The generated run filmed with Run Production, paused at a stage gate, then stopped."""
    panel, _, ready = planned
    panel.run_production.click()
    filmed_run = panel.run_id.value
    panel.pause.click()  # so that the stop below lands at a known place: the gate the run holds at
    until(panel, lambda s: s["status"] == "held" and s["hold"])  # its Dagster run ended there
    panel.stop.click()
    status = until(panel, lambda s: s["status"] == "stopped" and s["dagster_runs"][-1]["status"] == "FAILURE")
    return panel, filmed_run, shown(panel, status)


@pytest.fixture(scope="module")
def finished(stopped):
    """The stopped film resumed from its first unfinished stage and run to its end."""
    panel, _, at_stop = stopped
    panel.resume_stage.value = next(s["asset"] for s in at_stop.status["stages"] if s["status"] != "succeeded")
    panel.resume_from_stage.click()
    status = until(panel, ended)
    assert status["status"] == "succeeded", status["detail"]
    return panel, shown(panel, panel.refresh())


@pytest.fixture(scope="module")
def approved(finished):
    """The finished film approved from the panel."""
    panel, _ = finished
    panel.reviewer.value, panel.review_notes.value = "ana", "continuity checked"
    panel.approve.click()
    return panel, shown(panel, panel.refresh())


@pytest.fixture(scope="module")
def regenerated(approved):
    """After approval, one shot's clip regenerated with a new seed, with a pause and resume on the way."""
    panel, at_approval = approved
    before = clip_hashes(at_approval)
    shot = sorted(before)[1]
    panel.shot.value = shot
    panel.regen_seed.value = "4242"
    panel.regenerate_clip.click()
    asked = shown(panel)
    panel.pause.click()
    # its Dagster run ended, keeping no GPU
    held = shown(panel, until(panel, lambda s: s["status"] == "held" and s["hold"]))
    panel.resume.click()
    status = until(panel, lambda s: ended(s) and s["dagster_runs"][-1]["status"] in ("SUCCESS", "FAILURE"))
    return SimpleNamespace(shot=shot, before=before, asked=asked, held=held, done=shown(panel, panel.refresh()))


def assert_nothing_to_resume(seen):
    """Neither the failure banner nor a "Resume from ..." control: nothing failed or was stopped."""
    assert "sm-banner-failed" not in seen.status_banner.value and "sm-banner-stopped" not in seen.status_banner.value
    assert "no video_final" not in seen.final_video.value
    assert seen.resume_final.display == "none" and seen.resume_from_stage.display == "none"


def test_generate_plan_fills_the_uri_summary_and_review(planned):
    _, before, ready = planned
    assert before.pause.disabled and before.run_production.disabled  # nothing to pause or film yet
    assert "filesystem backend" in ready.backend.value and "(token auth) · ready" in ready.backend.value
    run_id = ready.run_id.value
    assert run_id.startswith("run_")
    assert f"/files/runs/{run_id}/plan_intake/plan_artifact.json?expires=" in ready.plan_uri.value
    assert "plan_id <code>plan_" in ready.plan_details.value and "shots" in ready.plan_details.value
    assert ready.plan_review.value.count("<tr data-shot=") == len(ready.plan_document["validated_plan"]["shots"])
    assert "Dialogue timeline" in ready.plan_review.value and "Render profile" in ready.plan_review.value
    assert ready.status["status"] == "planned", ready.status["detail"]
    assert not ready.run_production.disabled
    # Nothing failed: no failure banner, no "Resume from ...", and the panel says its button, not a command.
    assert_nothing_to_resume(ready)
    assert "Run Production" in ready.status_banner.value and "sparkle-motion" not in ready.status_banner.value
    assert "answers" in ready.services_line.value and "does not answer" not in ready.services_line.value
    # The dry run's report, before paying for a render: warnings and the estimated cost per stage.
    assert set(ready.plan_report_data["estimate"]["stages"]) == set(STAGE_KEYS)
    assert "<b>Estimate</b>" in ready.plan_report.value and "<b>Warnings</b>" in ready.plan_report.value
    assert "sm-warnings" in ready.plan_report.value and "sm-estimate" in ready.plan_report.value  # two blocks


def test_an_invalid_inline_edit_is_refused_naming_the_field(loaded, services):
    panel = loaded
    runs_before = sorted(p.name for p in (services.state / "artifacts" / "runs").iterdir())
    edited = json.loads(panel.plan_editor.value)
    edited["validated_plan"]["shots"][0]["duration_sec"] = -2
    panel.plan_editor.value = json.dumps(edited)
    panel.send_inline.value = True
    panel.run_production.click()
    assert "validated_plan.shots[0].duration_sec" in panel.plan_details.value
    assert "refused" in panel.responses.value
    assert panel.run_id.value == ""  # nothing was sent
    assert sorted(p.name for p in (services.state / "artifacts" / "runs").iterdir()) == runs_before


def test_run_production_stop_banner_and_resume_from_stage(planned, stopped, finished):
    _, _, ready = planned
    _, filmed_run, at_stop = stopped
    _, done = finished
    assert filmed_run == ready.run_id.value  # Run Production filmed the run Generate Plan made
    assert "sm-banner-stopped" in at_stop.status_banner.value and "Resume from stage" in at_stop.status_banner.value
    assert not at_stop.resume_from_stage.disabled and at_stop.pause.disabled
    assert "no video_final" in at_stop.final_video.value and not at_stop.resume_final.disabled
    assert at_stop.resume_final.display != "none" and at_stop.resume_from_stage.display != "none"
    assert done.status["run_id"] == filmed_run and done.status["status"] == "succeeded"
    assert "sm-banner-stopped" not in done.status_banner.value
    assert_nothing_to_resume(done)


def test_the_finished_film_shows_its_stages_previews_and_video(finished):
    panel, done = finished
    table = done.stage_table.value
    for stage in STAGE_KEYS:
        assert f'data-stage="{stage}" data-status="succeeded"' in table
    # The dialogue badge says the film's timeline length, not the sum of its lines and the timeline.
    runtime = sum(shot["duration_sec"] for shot in done.plan_document["validated_plan"]["shots"])
    assert f"dialogue lines · {runtime:.0f} s timeline" in table and "audio clips" not in table.split("finalize")[0]
    shots = len(done.plan_document["validated_plan"]["shots"])
    previews = done.stage_previews
    assert previews["base_images"].value.count("<img ") == shots + 1
    assert previews["dialogue_audio"].value.count("<audio ") >= 2  # lines and the stitched timeline
    assert previews["video_clips"].value.count("<video ") == shots
    assert "<video " in previews["assembly"].value and "<video " in previews["finalize"].value
    assert done.pause.disabled and done.stop.disabled and not done.approve.disabled
    assert "Manual review" in done.review_banner.value
    # The final video plays from its signed URL, without the bearer header, with ranges.
    src = done.final_video.value.split('src="')[1].split('"')[0].replace("&amp;", "&")
    status_code, content_type, body = fetch(src, {"Range": "bytes=0-1023"})
    assert (status_code, content_type, len(body)) == (206, "video/mp4", 1024)
    panel.download.click()
    assert "video_final.mp4" in panel.download_link.value


def test_approve_without_a_name_is_refused_beside_the_button_naming_the_box(finished):
    panel, _ = finished
    named, panel.reviewer.value = panel.reviewer.value, ""
    try:
        panel.approve.click()
    finally:
        panel.reviewer.value = named
    said = panel.review_said.value
    assert "sm-error" in said and "Reviewer box" in said and "--reviewer" not in said
    assert panel.review_said in panel.approve_row.children  # the line is beside the Approve button


def test_approve_from_the_panel_passes_the_review_gate(approved):
    _, at_approval = approved
    assert at_approval.review_gate_passed is True, at_approval.review_said.value
    assert at_approval.status["review"]["status"] == "approved"
    # The final deliverable section follows: the film, its review and who approved it; nothing to resume.
    assert "approved by ana" in at_approval.final_summary.value and "ready to share" in at_approval.final_summary.value
    assert "review gate passed" in at_approval.review_said.value
    assert_nothing_to_resume(at_approval)


def test_regenerate_one_shot_with_a_pause_on_the_way(regenerated):
    seen, shot = regenerated, regenerated.shot
    assert "regenerating the clip with seed(s) " in seen.asked.regenerate_said.value
    assert f"{shot} 4242" in seen.asked.regenerate_said.value  # seeds as a person reads them, not a dict
    assert seen.held.status["dagster_runs"][-1]["status"] == "FAILURE"
    assert "held before" in seen.held.status_banner.value and "the Resume button" in seen.held.status_banner.value
    held = [s for s in seen.held.status["stages"] if s["status"] == "held"]
    assert len(held) == 1 and not any(s["status"] == "running" for s in seen.held.status["stages"])
    assert f'data-stage="{held[0]["asset"]}" data-status="held"' in seen.held.stage_table.value
    # Once resumed, the stage's own time and the time it held are said apart (its wall time is both).
    resumed = next(s for s in seen.done.status["stages"] if s["asset"] == held[0]["asset"])
    assert resumed["status"] == "succeeded" and resumed["held_s"] > 0 and resumed["duration_s"] is not None
    assert f"<td class='sm-held'>{resumed['held_s']:.1f} s</td>" in seen.done.stage_table.value
    assert seen.held.pause.disabled and not seen.held.resume.disabled
    status = seen.done.status
    assert status["status"] == "succeeded", status["detail"]
    after = clip_hashes(seen.done)
    assert [s for s in seen.before if seen.before[s] != after[s]] == [shot]  # only that shot's clip changed
    assert status["regenerations"] == [{"shot_id": shot, "count": 1, "note": f"{shot} regenerations: 1"}]
    assert status["review"]["status"] == "pending"  # the approval judged the old final video


def test_a_valid_inline_edit_is_sent_as_a_new_run_in_dry_mode(loaded, services):
    panel = loaded
    edited = json.loads(json.dumps(panel.plan_document))
    edited["validated_plan"]["title"] = "Lantern and Fox, edited"
    panel.plan_editor.value = json.dumps(edited)
    panel.send_inline.value, panel.mode.value = True, "dry"
    panel.run_production.click()
    run_id = panel.run_id.value
    assert run_id, panel.responses.value
    status = until(panel, ended)
    assert status["status"] == "planned" and status["title"] == "Lantern and Fox, edited", status["detail"]
    from sparkle_motion_dagster.store.storage import ArtifactStore

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
