"""The embedded planner (``TemplatePlanner``): a deterministic template, not a language model.

It turns a prompt and title into a valid MoviePlan (two characters taken from
the prompt, three shots, N+1 keyframe prompts with seeds, four lines written for
the story's beats and timed by the speech engine's pace or a words-per-second
estimate, silences between) so the whole pipeline runs with no model at all.
Who is in the story and where comes from ``film/story.py``; the characters and
their lines from ``beats.py``. An LLM
planner is another implementation of the same planner resource.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from sparkle_motion_dagster.film.dialogue import estimate_speech_seconds
from sparkle_motion_dagster.film.plan import validate_plan
from sparkle_motion_dagster.film.speech_fit import SpeechTiming
from sparkle_motion_dagster.film.story import read_story
from sparkle_motion_dagster.resources.planning.beats import cast_roles, dialogue_lines
from sparkle_motion_dagster.resources.planning import Planner, plan_envelope

SHOT_TEMPLATES = [
    ("Establishing view", "Wide establishing view that sets the scene", "Slow push-in from a high angle", 6.0, False),
    ("Two-shot", "{a} and {b} face each other as the moment turns", "Gentle handheld drift toward the pair", 7.0, True),
    ("Closeup", "Closeup as {b} answers", "Slow dolly in on the speaker", 6.0, True),
]
# Each keyframe's prompt and who is in it ("a", "b": the two characters).
KEYFRAME_TEMPLATES = [
    ("{prompt}, establishing wide shot, cinematic lighting", ()),
    ("{a} and {b} in frame, {prompt}, medium shot", ("a", "b")),
    ("Closeup of {b}, {prompt}, shallow depth of field", ("b",)),
    ("Final frame, {prompt}, lingering wide shot", ("a", "b")),
]


def _seed_from(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()[:4], "little")


def template_plan(prompt: str, title: str, seed: int = 0, speech: SpeechTiming | None = None) -> dict[str, Any]:
    """A MoviePlan (as JSON data) for the prompt; the same inputs give the same plan. Its two
    characters are the people or animals the prompt names (stock names where it names fewer), its
    lines are written for the story's beats (``dialogue_lines``), and they last what ``speech`` (the
    configured engine's pace) says they take, else a words-per-second estimate."""
    if not prompt.strip():
        raise ValueError("prompt: must not be empty")
    if not title.strip():
        raise ValueError("title: must not be empty")
    base = _seed_from(prompt, title, seed)
    story = read_story(prompt)
    roles = cast_roles(story, base)
    names = {"a": roles[0].name, "b": roles[1].name}
    characters = [
        {"id": role.id, "name": role.name, "description": f"{role.description} From the story: {prompt.strip()}",
         "voice_profile": {"style": style, "language": "en-US", "gender": role.gender or gender}}
        for role, style, gender in ((roles[0], "confessional", "female"), (roles[1], "calm", "male"))
    ]
    ids = {"a": roles[0].id, "b": roles[1].id}
    fill = {"prompt": prompt.strip().rstrip("."), **names}
    base_images = [
        {"id": f"frame_{i:03d}", "prompt": t.format(**fill), "metadata": {"seed": (base + i) % 2**31},
         "characters": [ids[k] for k in cast]}
        for i, (t, cast) in enumerate(KEYFRAME_TEMPLATES)
    ]
    shots = [
        {"id": f"shot_{i + 1:03d}", "duration_sec": duration, "setting": f"{setting}: {fill['prompt']}",
         "visual_description": visual.format(**fill), "start_base_image_id": f"frame_{i:03d}",
         "end_base_image_id": f"frame_{i + 1:03d}", "motion_prompt": motion, "is_talking_closeup": talking}
        for i, (setting, visual, motion, duration, talking) in enumerate(SHOT_TEMPLATES)
    ]
    timeline = []
    clock = SHOT_TEMPLATES[0][3] + 0.5  # the establishing shot plays without dialogue
    for speaker, line in dialogue_lines(story, roles, base):
        profile = characters[0 if speaker == "a" else 1]["voice_profile"]
        duration = round(speech.seconds(line, profile), 2) if speech else estimate_speech_seconds(line)
        timeline.append({"type": "dialogue", "character_id": ids[speaker], "text": line,
                         "start_time_sec": round(clock, 2), "duration_sec": duration})
        clock += duration + 0.4
    # The last shot stretches so the final line ends a beat before the cut.
    others = sum(shot["duration_sec"] for shot in shots[:-1])
    shots[-1]["duration_sec"] = round(max(shots[-1]["duration_sec"], clock + 0.8 - others), 2)
    plan = {
        "title": title.strip(),
        "characters": characters,
        "base_images": base_images,
        "shots": shots,
        "dialogue_timeline": timeline,
        "render_profile": {"video": {"model_id": "animatic", "max_fps": 24}},
        "metadata": {"source": "template_planner", "planner": "template",
                     "note": "deterministic template planner, not a language model", "seed": seed},
    }
    return validate_plan(plan).model_dump(mode="json")


class TemplatePlanner(Planner):
    """Embedded planner: a deterministic template (no language model)."""

    backend: ClassVar[str] = "template"

    def plan(self, *, prompt, title, seed=0, speech=None):
        return plan_envelope(template_plan(prompt, title, seed, speech), title=title, prompt=prompt, seed=seed,
                             tool="template_planner")
