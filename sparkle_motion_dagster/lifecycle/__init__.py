"""The life of a film run, without Dagster: pause, resume and stop, seed overrides and regeneration,
the event log, review, the drop folder, retention and evacuation."""
