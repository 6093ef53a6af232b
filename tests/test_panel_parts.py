"""The panel's small parts without services: Colab's port proxy, endpoint defaults, badges, edits."""

import json
import sys
import types
from pathlib import Path

import pytest

from sparkle_motion_dagster.panel import colab, plan_view, previews
from sparkle_motion_dagster.panel.endpoints import PanelEndpoints

LANTERN = Path(__file__).resolve().parents[1] / "sparkle_motion_dagster" / "samples" / "lantern_walk.json"


def test_loopback_urls_go_through_colabs_port_proxy_only_in_colab(monkeypatch):
    url = "http://127.0.0.1:7077/files/runs/run_1/finalize/video_final.mp4?expires=9&sig=ab"
    assert colab.browser_url(url) == url  # not in Colab: unchanged
    asked = []
    output = types.ModuleType("google.colab.output")
    output.eval_js = lambda js: asked.append(js) or "https://7077-abc.colab.dev/"
    for name, module in {"google": types.ModuleType("google"), "google.colab": types.ModuleType("google.colab"),
                         "google.colab.output": output}.items():
        monkeypatch.setitem(sys.modules, name, module)
    colab._proxied_base.cache_clear()
    try:
        assert colab.browser_url(url) == ("https://7077-abc.colab.dev/files/runs/run_1/finalize/video_final.mp4"
                                          "?expires=9&sig=ab")
        assert asked == ["google.colab.kernel.proxyPort(7077)"]
        assert colab.browser_url("http://gpu-box:7077/x") == "http://gpu-box:7077/x"  # reachable as it is
    finally:
        colab._proxied_base.cache_clear()


def test_endpoints_come_from_the_environment_then_the_state_folder(tmp_path, monkeypatch):
    for name in ("SPARKLE_DAGSTER_URL", "SPARKLE_ARTIFACTS_URL", "ARTIFACTS_FS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPARKLE_STATE_DIR", str(tmp_path))
    assert PanelEndpoints.from_environment() == PanelEndpoints()  # loopback defaults
    (tmp_path / "panel_endpoints.json").write_text(json.dumps({"dagster_url": "http://127.0.0.1:4000",
                                                               "artifacts_url": "http://127.0.0.1:4001"}))
    saved = PanelEndpoints.from_environment()
    assert (saved.dagster_url, saved.artifacts_url, saved.token) == ("http://127.0.0.1:4000", "http://127.0.0.1:4001",
                                                                     None)
    monkeypatch.setenv("SPARKLE_DAGSTER_URL", "http://gpu-box:3000/")
    monkeypatch.setenv("ARTIFACTS_FS_TOKEN", "t0k")
    env = PanelEndpoints.from_environment()
    assert (env.dagster_url, env.artifacts_url, env.token) == ("http://gpu-box:3000", "http://127.0.0.1:4001", "t0k")


def test_badges_read_like_the_seeds():
    section = {"media_summary": {"audio": {"count": 2, "total_duration_s": 44.2}, "json": {"count": 1},
                                 "video": {"count": 1, "total_duration_s": 6.0}}}
    assert previews.stage_badges(section) == "2 audio clips · 44 s, 1 video · 6 s"


def test_an_edit_is_checked_with_field_paths():
    document = json.loads(LANTERN.read_text())
    assert plan_view.check_edit(json.dumps(document))[1] == []
    document["shots"][1]["end_base_image_id"] = "nowhere"
    document["base_images"][0]["prompt"] = ""
    fields = [p["field"] for p in plan_view.check_edit(json.dumps(document))[1]]
    assert "base_images[0].prompt" in fields and any(f.startswith("shots[1]") for f in fields)
    assert plan_view.check_edit("{not json")[1][0]["field"] == "(json)"
    assert "base_images[0].prompt" in plan_view.problems_html(plan_view.check_edit(json.dumps(document))[1])


def test_html_escapes_what_a_plan_says():
    document = json.loads(LANTERN.read_text())
    document["title"] = "<script>alert(1)</script>"
    assert "<script>" not in plan_view.summary_html(document) + plan_view.review_html(document)


def test_buttons_are_enabled_only_when_they_make_sense():
    pytest.importorskip("ipywidgets", reason="needs the notebook extra: pip install -e '.[notebook]'")
    from sparkle_motion_dagster.panel import create_control_panel

    panel = create_control_panel(PanelEndpoints("http://127.0.0.1:9", "http://127.0.0.1:9"))
    panel._set_buttons({"status": "running"})
    assert not panel.pause.disabled and not panel.stop.disabled and panel.resume.disabled
    assert panel.run_production.disabled and panel.generate_plan.disabled
    panel._set_buttons({"status": "succeeded"})
    assert panel.pause.disabled and panel.stop.disabled and panel.resume_from_stage.disabled
    assert panel.resume_from_stage.layout.display == panel.resume_final.layout.display == "none"  # nothing to resume
    panel._set_buttons({"status": "stopped"})
    assert not panel.resume.disabled and not panel.resume_from_stage.disabled
    assert panel.resume_from_stage.layout.display is None and panel.resume_final.layout.display is None
    panel.run_id.value = ""
    panel.pause.click()  # no run: said beside the button, not raised
    assert "Run ID" in panel.responses.value


def test_the_plan_report_shows_each_warning_with_its_field_and_the_estimate_per_stage():
    report = {"warnings": [{"field": "dialogue_timeline[1]", "kind": "overrun", "speech_s": 5.31, "window_s": 3.2,
                            "tempo": 1.25, "lost_s": 1.05, "message": "will lose 1.05 s at tempo 1.25 <sic>"}],
              "estimate": {"total_seconds": 12.5, "peak_memory_bytes": 2_000_000_000,
                           "stages": {"video_clips": {"seconds": 9.0, "peak_memory_bytes": 2_000_000_000,
                                                      "basis": "published", "backend": "wan"},
                                      "video_final": {"seconds": None, "peak_memory_bytes": None,
                                                      "basis": "none", "backend": "passthrough"}}}}
    html = plan_view.report_html(report)
    assert "<code>dialogue_timeline[1]</code> <i>overrun</i>: will lose 1.05 s at tempo 1.25 &lt;sic&gt;" in html
    assert "<b>Estimate</b>: 12.5 s, peak memory 2.00 GB" in html
    assert "<td>video_clips</td><td>wan</td><td>9.0 s</td><td>2.00 GB</td><td>published</td>" in html
    assert "<td>video_final</td><td>passthrough</td><td>?</td><td>?</td><td>none</td>" in html
    assert "<b>Warnings</b>: none" in plan_view.report_html({"warnings": []})


def fake_clone(tmp_path: Path) -> Path:
    """A folder shaped like a clone of the project: workspace.yaml, the package, notebooks/."""
    clone = tmp_path / "clone"
    (clone / "sparkle_motion_dagster").mkdir(parents=True)
    (clone / "notebooks").mkdir()
    (clone / "workspace.yaml").write_text("load_from: []\n")
    return clone


def test_the_notebook_finds_the_state_the_cli_finds(tmp_path, monkeypatch):
    from sparkle_motion_dagster.panel.state import COLAB_DRIVE_STATE, COLAB_STATE, notebook_state_dir
    from sparkle_motion_dagster.store.locations import state_dir

    monkeypatch.delenv("SPARKLE_STATE_DIR", raising=False)
    clone = fake_clone(tmp_path)
    monkeypatch.chdir(clone / "notebooks")  # where Voilà and Jupyter run the notebook
    assert state_dir() == notebook_state_dir("") == clone / "state"  # the clone's, not notebooks/state
    assert notebook_state_dir("", in_colab=True) == COLAB_STATE  # nothing found: Colab's own root
    (clone / "state" / "dagster_home").mkdir(parents=True)
    assert notebook_state_dir("", in_colab=True) == state_dir() == clone / "state"  # an existing state wins
    assert notebook_state_dir("", use_drive=True, in_colab=True) == COLAB_DRIVE_STATE
    assert notebook_state_dir("", use_drive=True) == clone / "state"  # Drive is Colab's
    assert notebook_state_dir(str(tmp_path / "mine")) == tmp_path / "mine"  # the STATE_DIR parameter
    monkeypatch.setenv("SPARKLE_STATE_DIR", str(tmp_path / "env"))
    assert notebook_state_dir("", in_colab=True) == state_dir() == tmp_path / "env"


def test_the_endpoints_file_keeps_what_others_serve(tmp_path, monkeypatch):
    from sparkle_motion_dagster.panel import discovery

    discovery.record(tmp_path, urls={"dagster_url": "http://127.0.0.1:3001"})  # as make ui does: no pid
    discovery.record(tmp_path, urls={"artifacts_url": "http://127.0.0.1:4001"}, pids={"artifacts": 4242})
    assert discovery.recorded(tmp_path) == {"dagster_url": "http://127.0.0.1:3001",
                                            "artifacts_url": "http://127.0.0.1:4001", "pids": {"artifacts": 4242}}
    discovery.forget(tmp_path, ["artifacts"])  # a kernel stops what it started, and only that
    assert discovery.recorded(tmp_path) == {"dagster_url": "http://127.0.0.1:3001", "pids": {}}
    discovery.forget(tmp_path, ["dagster"])
    assert not (tmp_path / "panel_endpoints.json").exists()
    assert not discovery.dagster_serves(f"http://127.0.0.1:{discovery.free_port('127.0.0.1')}", tmp_path)
    monkeypatch.setenv("SPARKLE_DAGSTER_PORT", "3005")
    assert discovery.port_setting("dagster_port", 0, "SPARKLE_DAGSTER_PORT") == 3005
    assert discovery.port_setting("dagster_port", 3002, "SPARKLE_DAGSTER_PORT") == 3002
    monkeypatch.setenv("SPARKLE_DAGSTER_PORT", "x")
    with pytest.raises(ValueError, match="SPARKLE_DAGSTER_PORT: 'x'"):
        discovery.port_setting("dagster_port", None, "SPARKLE_DAGSTER_PORT")
    with pytest.raises(ValueError, match="dagster_port: 70000"):
        discovery.port_setting("dagster_port", 70000, "SPARKLE_DAGSTER_PORT")
def test_the_panel_says_its_own_controls_where_the_services_say_command_line_ones(tmp_path):
    from sparkle_motion_dagster.orchestration.status import _overall
    from sparkle_motion_dagster.panel.client import ServiceError
    from sparkle_motion_dagster.panel.wording import in_panel_words, review_line
    from sparkle_motion_dagster.lifecycle.review import record_review
    from sparkle_motion_dagster.store.storage import ArtifactStore

    with pytest.raises(ValueError) as refused:  # what the service answers an approval without a name
        record_review(ArtifactStore(tmp_path), "run_0a1b2c3d", "approve", "")
    said = in_panel_words(str(ServiceError(422, str(refused.value))))
    assert said.startswith("Reviewer box: ") and "--reviewer" not in said and "Reviewer box" in said.split(":", 1)[1]
    stages = [{"status": "succeeded", "name": "plan_intake"}]
    runs = [{"_active": False, "_started": False, "status": "SUCCESS"}]
    planned = _overall("run_0a1b2c3d", "running", runs, stages + [{"status": "pending"}], True, dry_run=True)[1]
    held = _overall("run_0a1b2c3d", "paused", [], stages, True, hold={"stage": "video_clips", "since": ""})[1]
    assert in_panel_words(planned).endswith("film it with the Run Production button")
    assert in_panel_words(held).endswith("continue with the Resume button")
    assert review_line({"status": "pending", "reviewer": "tester", "reviewed_at": "x"}) == "review: pending"
    assert review_line({"status": "approved", "reviewer": "Ava", "reviewed_at": "2026-12-07T12:15:44Z",
                        "ready_to_share": True}) == "review: approved by Ava at 12:15:44 · ready to share"


def test_the_dialogue_badge_says_the_films_timeline_not_the_sum_of_its_audio():
    section = {"media_summary": {"audio": {"count": 5, "total_duration_s": 39.4}},
               "artifacts": [{"artifact_type": "tts_timeline_audio", "duration_s": 25.2}]
               + [{"artifact_type": "shot_dialogue_audio", "duration_s": 3.55}] * 4}
    assert previews.stage_badges(section) == "4 dialogue lines · 25 s timeline"
