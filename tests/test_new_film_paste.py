"""The launchpad's new_film config as people paste it: a plan's JSON, quotes and apostrophes
and all, and what a paste that cannot be a plan says. The run config is the YAML text the
launchpad holds, read as the webserver reads it."""

import base64
import io
import json

import dagster as dg
import pytest
import yaml
from PIL import Image

from sparkle_motion_dagster.definitions import defs
from sparkle_motion_dagster.jobs.new_film import HOW_TO_PASTE
from sparkle_motion_dagster.media.previews import thumbnail_markdown
from sparkle_motion_dagster.lifecycle.titles import TITLE_TAG


def apostrophe_plan(sample_plan: dict) -> dict:
    plan = json.loads(json.dumps(sample_plan))
    plan["title"] = "Noor's \"Lantern\""
    plan["dialogue_timeline"][0]["text"] = "It's not far, isn't it? She said \"soon\"."
    return plan


def launchpad_yaml(plan: dict) -> str:
    """The scaffolded default with `{}` of `plan: {}` replaced by pretty JSON, its lines as pasted
    (not indented: the editor does not indent what is pasted)."""
    return ("ops:\n  submit_new_film:\n    config:\n      plan: " + json.dumps(plan, indent=2, ensure_ascii=False)
            + "\n      preview: true\n")


def new_film(instance, run_config):
    return defs.get_job_def("new_film").execute_in_process(run_config=run_config, instance=instance,
                                                          raise_on_error=False)


def test_a_plan_with_apostrophes_pasted_as_json_launches(isolated_state, instance, sample_plan):
    plan = apostrophe_plan(sample_plan)
    result = new_film(instance, yaml.safe_load(launchpad_yaml(plan)))
    assert result.success
    run_id = result.output_for_node("submit_new_film")
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags["sparkle/new_film_run_id"] == run_id and tags[TITLE_TAG] == plan["title"]
    (materialized,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = materialized.event_specific_data.metadata
    assert metadata["title"].value == plan["title"]
    assert metadata["film_run"].value == ("/runs?q%5B0%5D=tag%3Asparkle%2Fnew_film_dagster_run%3D"
                                          + result.run_id)


@pytest.mark.parametrize("config", [
    {"plan_text": '{"title": "Noor'},  # what is left of JSON pasted between '' at its first apostrophe
    {"plan_text": "'a string, not a plan'"},
    {},
])
def test_a_malformed_paste_fails_at_once_saying_how_to_paste(isolated_state, instance, config):
    result = new_film(instance, {"ops": {"submit_new_film": {"config": config}}})
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert HOW_TO_PASTE in message and ("plan_text" in message or "none" in message)
    assert "replace the {} of `plan: {}`" in HOW_TO_PASTE and "plan_text: |" in HOW_TO_PASTE


@pytest.mark.parametrize("size", [(160, 90), (1280, 720)])
def test_previews_are_at_least_480_pixels_wide(size):
    markdown = thumbnail_markdown(Image.new("RGB", size, "teal"), alt="shot")
    encoded = markdown.split("base64,", 1)[1].rstrip(")")
    assert Image.open(io.BytesIO(base64.b64decode(encoded))).width >= 480


def test_a_title_and_the_new_film_run_go_on_the_film_run_and_back(isolated_state, instance, sample_plan):
    plan = apostrophe_plan(sample_plan)
    made = new_film(instance, {"ops": {"submit_new_film": {"config": {"plan": plan, "preview": True}}}})
    launcher = defs.resolve_sensor_def("new_film_launcher")
    request = launcher(dg.build_run_status_sensor_context(
        sensor_name=launcher.name, dagster_instance=instance, dagster_run=instance.get_run_by_id(made.run_id),
        dagster_event=made.get_run_success_event()))
    assert request.tags[TITLE_TAG] == plan["title"] and request.tags["sparkle/new_film_dagster_run"] == made.run_id

    # As the film run starts, the new_film run is tagged with it.
    film_run = dg.DagsterRun(job_name="film", run_id="0f11a1b2-0000-4000-8000-000000000001", tags=request.tags)
    backlink = defs.resolve_sensor_def("new_film_backlink")
    backlink(dg.build_run_status_sensor_context(sensor_name=backlink.name, dagster_instance=instance,
                                                dagster_run=film_run, dagster_event=made.get_run_success_event()))
    assert instance.get_run_by_id(made.run_id).tags["sparkle/film_dagster_run"] == film_run.run_id


def test_a_film_run_launched_without_its_title_is_tagged_with_it_by_its_first_step(isolated_state, instance,
                                                                                    sample_plan):
    # The control panel and `dagster job launch` start the film job with the partition alone.
    from sparkle_motion_dagster.orchestration.runner import submit_run
    from sparkle_motion_dagster.store.storage import ArtifactStore

    plan = apostrophe_plan(sample_plan)
    store = ArtifactStore(isolated_state / "artifacts")
    run_id = submit_run(store, instance, plan, source="test", preview=True, clip_model_ids=("animatic",),
                        clip_backend="animatic")
    result = defs.resolve_job_def("plan_dry_run").execute_in_process(instance=instance, partition_key=run_id)
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[TITLE_TAG] == plan["title"]
