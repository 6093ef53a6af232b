"""The adapters as Dagster resources: one folder per stage (planning, speech, keyframes, clips,
lipsync), each with its interface in ``__init__.py`` and one adapter per file beside it, the embedded
default included. ``selection.py`` chooses the adapters from the environment; ``settings.py`` is the
one environment-to-field mechanism they share."""
