"""Media I/O, without Dagster: every ffmpeg encode, decode and probe, WAV files and resampling,
the espeak-ng engine binding, and the small previews the Dagster UI shows."""
