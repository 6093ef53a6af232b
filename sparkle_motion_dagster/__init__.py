"""Sparkle Motion: a story prompt into a short film, as a Dagster asset graph partitioned by film run id."""
