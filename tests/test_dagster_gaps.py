"""The two calls outside Dagster's public API (``orchestration/dagster_gaps.py``): these fail the day
they change, instead of a killed film's slot silently blocking every later film, or a waiting
command no longer saying what it waits for."""

import dagster as dg

from sparkle_motion_dagster.orchestration.dagster_gaps import free_pool_slots, pool_slots


def test_a_dead_runs_pool_slot_is_freed(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("gpu", 1)
        assert storage.claim_concurrency_slot("gpu", "dead-run", "video_clips").is_claimed
        assert "dead-run" in storage.get_concurrency_run_ids()
        assert not storage.claim_concurrency_slot("gpu", "next-run", "video_clips").is_claimed

        free_pool_slots(instance, "dead-run")

        assert "dead-run" not in storage.get_concurrency_run_ids()
        assert storage.claim_concurrency_slot("gpu", "next-run", "video_clips").is_claimed


def test_the_pool_says_who_holds_its_slots_and_who_waits(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("gpu", 1)
        assert storage.claim_concurrency_slot("gpu", "holder", "video_clips").is_claimed
        assert not storage.claim_concurrency_slot("gpu", "waiter", "base_images").is_claimed

        info = pool_slots(instance, "gpu")

        assert [(slot.run_id, slot.step_key) for slot in info.claimed_slots] == [("holder", "video_clips")]
        assert [(step.run_id, step.step_key) for step in info.pending_steps
                if (step.run_id, step.step_key) != ("holder", "video_clips")] == [("waiter", "base_images")]
