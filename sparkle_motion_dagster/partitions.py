"""Every film asset is partitioned by the film run's id (``run_9c29599b``).

A film run can span several Dagster runs (first launch, retries,
re-materializations); the partition key is the film run id, never the Dagster
run id.
"""

import dagster as dg

run_partitions = dg.DynamicPartitionsDefinition(name="run_id")
