"""The life of a film run, without Dagster: where its files live and how they are written, the
per-item render loop and its cache, pause/resume/stop, seed overrides and regeneration, the event log,
review, the catalog, the drop folder, retention and evacuation."""
