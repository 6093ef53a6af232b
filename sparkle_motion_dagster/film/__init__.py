"""The film domain, without Dagster: the MoviePlan schema, timeline arithmetic, dialogue and voices,
the stitcher, subtitles, visemes, plan intake checks and the final cut's arithmetic."""
