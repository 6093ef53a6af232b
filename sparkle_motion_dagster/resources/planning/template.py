"""The embedded planner (``TemplatePlanner``): a deterministic template, not a language model.

It turns a prompt and title into a valid MoviePlan (two characters, three shots,
N+1 keyframe prompts with seeds, dialogue timed by the speech engine's pace or a
words-per-second estimate, silences between) so the whole pipeline runs with no model at all. An LLM
planner is another implementation of the same planner resource.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any, ClassVar

from sparkle_motion_dagster.film.dialogue import estimate_speech_seconds
from sparkle_motion_dagster.film.plan import validate_plan
from sparkle_motion_dagster.film.speech_fit import SpeechTiming
from sparkle_motion_dagster.resources.planning import Planner, plan_envelope

NAMES = ["Ava", "Miko", "Jun", "Rosa", "Theo", "Lena", "Omar", "Iris", "Kai", "Noor", "Sam", "Yara"]
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
# Dialogue built from the prompt and the characters: {story} is the prompt's first sentence (at most
# 14 words), {one} and {two} words from it (see _story_words), {title} the film's title, {a} and {b}
# the two characters; the seed picks the set.
LINE_SETS = [
    [("a", "{b}, {story_lc}."), ("b", "Then tell me about the {one}, {a}. I am listening."),
     ("a", "I was afraid the {two} would change everything between us."),
     ("b", "Not between us. Not over {title}.")],
    [("b", "{a}, do you remember how this began? {story}."), ("a", "I remember the {one}, {b}."),
     ("b", "And the {two}? Tell me you remember that too."), ("a", "Every moment of {title}.")],
    [("a", "So this is where it ends, {b}. {story}."), ("b", "Only if we let the {one} decide, {a}."),
     ("a", "Then we decide. The {two} can wait."), ("b", "Then let this be {title}.")],
]
STOP_WORDS = frozenset("""a an the and or but of on in at to for from with by into onto over under before after
    while when then than that this these those their there they them his her its our your who whom whose which
    what where why how are was were been being have has had does did will would could should about across
    just only very some each every other another again""".split())


def _story_words(prompt: str, title: str) -> dict[str, str]:
    """What the dialogue says about this story: its first sentence, the first word after an
    article (usually who or what it is about) and its last meaningful word (often where or when)."""
    first = re.split(r"(?<=[.!?])\s+", prompt.strip(), maxsplit=1)[0].rstrip(".!? ")
    story = " ".join(first.split()[:14])
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", first)
    meaningful = [w.lower() for w in words if len(w) > 3 and w.lower() not in STOP_WORDS]
    after_article = [w.lower() for before, w in itertools.pairwise(words)
                     if before.lower() in ("a", "an", "the", "my", "our", "his", "her", "their")
                     and w.lower() not in STOP_WORDS]
    one = (after_article or meaningful or ["moment"])[0]
    two = next((w for w in reversed(meaningful) if w != one), "night")
    lowered = story[:1].lower() + story[1:] if not story[:2].isupper() else story
    return {"story": story[:1].upper() + story[1:], "story_lc": lowered, "one": one, "two": two,
            "title": title.strip()}


def _seed_from(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()[:4], "little")


def template_plan(prompt: str, title: str, seed: int = 0, speech: SpeechTiming | None = None) -> dict[str, Any]:
    """A MoviePlan (as JSON data) for the prompt; the same inputs give the same plan. Lines last
    what ``speech`` (the configured engine's pace) says they take, else a words-per-second estimate."""
    if not prompt.strip():
        raise ValueError("prompt: must not be empty")
    if not title.strip():
        raise ValueError("title: must not be empty")
    base = _seed_from(prompt, title, seed)
    first = base % len(NAMES)
    second = (first + 1 + (base >> 8) % (len(NAMES) - 1)) % len(NAMES)
    names = {"a": NAMES[first], "b": NAMES[second]}
    characters = [
        {"id": names[k].lower(), "name": names[k], "description": f"{names[k]}, at the heart of: {prompt}",
         "voice_profile": {"style": style, "language": "en-US", "gender": gender}}
        for k, style, gender in (("a", "confessional", "female"), ("b", "calm", "male"))
    ]
    fill = {"prompt": prompt.strip().rstrip("."), **names}
    base_images = [
        {"id": f"frame_{i:03d}", "prompt": t.format(**fill), "metadata": {"seed": (base + i) % 2**31},
         "characters": [names[k].lower() for k in cast]}
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
    words = {**fill, **_story_words(prompt, title)}
    for speaker, text in LINE_SETS[(base >> 16) % len(LINE_SETS)]:
        line = text.format(**words)
        profile = characters[0 if speaker == "a" else 1]["voice_profile"]
        duration = round(speech.seconds(line, profile), 2) if speech else estimate_speech_seconds(line)
        timeline.append({"type": "dialogue", "character_id": names[speaker].lower(), "text": line,
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
