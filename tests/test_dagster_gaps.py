"""The one call outside Dagster's public API (``orchestration/dagster_gaps.py``): this fails the day
it changes, instead of a killed film's slot silently blocking every later film."""

import dagster as dg

from sparkle_motion_dagster.orchestration.dagster_gaps import free_pool_slots


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
