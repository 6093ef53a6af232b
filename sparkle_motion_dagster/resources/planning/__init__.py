"""Planning: a story prompt into a MoviePlan artifact."""

from __future__ import annotations

from typing import Any

import dagster as dg

from sparkle_motion_dagster.resources.planning.template import plan_envelope, template_plan


class Planner(dg.ConfigurableResource):
    """Interface: write a plan artifact (the seed's envelope) for a prompt and title."""

    def plan(self, *, prompt: str, title: str, seed: int = 0) -> dict[str, Any]:
        raise NotImplementedError


class TemplatePlanner(Planner):
    """Embedded planner: a deterministic template (no language model)."""

    def plan(self, *, prompt, title, seed=0):
        return plan_envelope(template_plan(prompt, title, seed), title=title, prompt=prompt, seed=seed,
                             tool="template_planner")
