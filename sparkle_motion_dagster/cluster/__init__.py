"""Running the same graph on several machines: the executor choice, Postgres storage for the
Dagster instance, Celery workers (one per GPU) and the check that every box sees the same
artifact root and Dagster storage."""
