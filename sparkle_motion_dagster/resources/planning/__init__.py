"""Planning: a story prompt into a MoviePlan artifact.

The interface and the artifact's shape are here; each planner has its own
module: ``template.py`` (the embedded default, no model) and ``llm.py`` (any
OpenAI-compatible chat API).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, ClassVar

import dagster as dg

from sparkle_motion_dagster.film.speech_fit import SpeechTiming


class Planner(dg.ConfigurableResource):
    """Interface: write a plan artifact (the seed's envelope, see :func:`plan_envelope`) for a prompt and title.

    ``speech`` is the configured speech engine's timing: with it, a planner gives each line
    the ``duration_sec`` that engine needs, so the plan has no overrun to begin with.
    ``backend`` names the planner in reports.
    """

    backend: ClassVar[str] = ""

    def plan(self, *, prompt: str, title: str, seed: int = 0, speech: SpeechTiming | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the plan for the same prompt, title and seed (credentials do not)."""
        settings = {k: v for k, v in self.model_dump().items() if not any(w in k for w in ("key", "token"))}
        return {"planner": type(self).__name__, **settings}


def plan_envelope(plan: dict[str, Any], *, title: str, prompt: str, seed: int, tool: str) -> dict[str, Any]:
    """The script agent's plan artifact shape: request, validated_plan and provenance."""
    request_id = hashlib.sha256(f"{tool}\x00{title}\x00{prompt}\x00{seed}".encode()).hexdigest()[:32]
    return {
        "request": {"title": title, "prompt": prompt, "seed": seed},
        "validated_plan": plan,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "metadata": {"tool": tool, "request_id": request_id, "shot_count": len(plan["shots"])},
        "schema_uri": "sparkle-motion://schemas/MoviePlan.schema.json",
    }
