"""The film's assets: one module per stage, named by its asset key in the stage table."""

from importlib import import_module

import dagster as dg

from sparkle_motion_dagster.stages import STAGES


def film_assets() -> list[dg.AssetsDefinition]:
    """Every stage's asset in film order: ``assets/<key>.py`` defines the asset ``<key>``."""
    return [getattr(import_module(f"{__name__}.{row.key}"), row.key) for row in STAGES]
