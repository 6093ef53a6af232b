"""Launch-time options shared by the rendering stages."""

import dagster as dg
from pydantic import Field


class RenderConfig(dg.Config):
    force: bool = Field(default=False, description="Render every item again even when its inputs did not change.")
