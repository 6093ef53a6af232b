"""The embedded template planner follows its prompt: its cast, its lines, and the scenes its keyframes show."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from sparkle_motion_dagster.film.plan import validate_plan
from sparkle_motion_dagster.film.scene import Scene, read_scene
from sparkle_motion_dagster.film.story import VERB_FORMS, read_story
from sparkle_motion_dagster.resources.keyframes.storyboard import render_storyboard
from sparkle_motion_dagster.resources.planning.template import template_plan

LANTERN = "A lantern keeper walks a foggy wood and meets a fox"
PROMPTS = [LANTERN, "Two friends walk a coastal path at dawn",
           "A detective waits on a city street at night in the rain",
           "Mara meets a fox in the woods", "A robot learns to bake bread in a tiny harbour town.",
           "Rooftop revelations under neon rain", "The keeper's fox won't leave: \"it's my lantern\", she says",
           "The fox will not leave the keeper"]


def spoken(plan: dict) -> list[str]:
    return [entry["text"] for entry in plan["dialogue_timeline"] if entry["type"] == "dialogue"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_lantern_plan_is_about_the_keeper_and_the_fox(seed):
    plan = template_plan(LANTERN, "Lantern", seed)
    names = [c["name"] for c in plan["characters"]]
    assert names == ["The Lantern Keeper", "The Fox"]
    assert not {"Iris", "Ava"} & set(" ".join(spoken(plan)).split())
    descriptions = [c["description"] for c in plan["characters"]]
    assert re.search(r"\w+ hair and an? \w+ \w+", descriptions[0]) and "fox with orange fur" in descriptions[1]
    speakers = {entry["character_id"] for entry in plan["dialogue_timeline"] if entry["type"] == "dialogue"}
    assert speakers == {"lantern_keeper", "fox"}
    assert any("foggy wood" in line for line in spoken(plan))
    validate_plan(plan)  # what the CLI and the intake check


@pytest.mark.parametrize("prompt", PROMPTS)
def test_every_line_is_a_sentence_of_its_own(prompt):
    for seed in range(3):
        lines = spoken(template_plan(prompt, "A Title", seed))
        assert len(lines) == 4
        for line in lines:
            assert line[:1].isupper() and line.endswith((".", "?", "!")), line
            assert prompt.rstrip(".").lower() not in line.lower()
            # No verb where a noun belongs ("the meets", "a walks").
            after_article = re.findall(r"\b(?:the|a|an)\s+(\w+)", line.lower())
            assert not [w for w in after_article if w in VERB_FORMS and w.endswith("s")], line
            assert "  " not in line and " ," not in line and " ." not in line


@pytest.mark.parametrize("prompt", ["The keeper's fox won't leave: \"it's my lantern\", she says",
                                    "The fox will not leave the keeper", "The keeper’s fox waits by the sea"])
def test_possessives_and_helping_verbs_keep_who_the_prompt_names(prompt):
    names = {c["name"] for c in template_plan(prompt, "Keeper", 0)["characters"]}
    assert names == {"The Keeper", "The Fox"}


def test_a_prompt_that_names_nobody_gets_stock_names():
    plan = template_plan("Rooftop revelations under neon rain", "Rooftop", 0)
    assert all(" " not in c["name"] and not c["name"].startswith("The") for c in plan["characters"])
    assert [c["name"] for c in template_plan("Mara meets a fox in the woods", "M", 0)["characters"]] == \
        ["Mara", "The Fox"]


def test_the_story_reader_finds_who_what_where_and_when():
    story = read_story(LANTERN)
    assert [b.noun for b in story.beings] == ["lantern keeper", "fox"]
    assert (story.verb.base, story.verb.past, story.action) == ("walk", "walked", "the foggy wood")
    assert (story.place.preposition, story.place.phrase) == ("in", "the foggy wood")
    assert story.scene == Scene("forest", "day", "fog")
    assert read_scene("a coastal path at dawn") == Scene("coast", "dawn", "clear")
    assert read_scene("a city street at night, rain") == Scene("city", "night", "rain")
    assert read_scene("nothing in particular") == Scene()
    assert read_scene("at dusk", fallback=Scene("desert", "day", "snow")) == Scene("desert", "dusk", "snow")


def frame(prompt: str) -> np.ndarray:
    return np.asarray(render_storyboard(prompt, seed=7, width=320, height=180, label="frame_000"), dtype=np.float32)


def horizon_row(picture: np.ndarray) -> int:
    """The row with the sharpest change in mean brightness between a quarter and four fifths down
    (below the slate label, above the caption)."""
    top = len(picture) // 4
    rows = picture.mean(axis=(1, 2))[top: int(len(picture) * 0.8)]
    return top + int(np.argmax(np.abs(np.diff(rows))))


def vertical_edges(picture: np.ndarray) -> float:
    """How much the brightness changes from one column to the next (buildings and rain streaks)."""
    grey = picture.mean(axis=2)[: int(len(picture) * 0.75)]
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_storyboard_frames_show_their_setting_time_and_weather():
    dawn_coast, rainy_city = frame("a coastal path at dawn"), frame("a city street at night, rain")
    assert dawn_coast.mean() - rainy_city.mean() > 40  # a lit dawn against a dark, wet night
    low_sky = slice(54, 81)  # 30% to 45% of the height: just above a sea horizon
    warm = dawn_coast[low_sky, :, 0].mean() - dawn_coast[low_sky, :, 2].mean()
    cold = rainy_city[low_sky, :, 0].mean() - rainy_city[low_sky, :, 2].mean()
    assert warm > cold + 30  # a warm, low dawn sky
    assert vertical_edges(rainy_city) > 2 * vertical_edges(dawn_coast)  # buildings, windows and rain
    assert abs(horizon_row(dawn_coast) - horizon_row(rainy_city)) > 10  # a sea horizon sits higher
    middle = slice(45, 144)  # between the slate label and the caption
    foggy, clear = frame("a foggy wood")[middle], frame("a wood")[middle]
    assert foggy.std() < clear.std() * 0.8 and foggy.mean() > clear.mean() + 20  # fog: paler, flatter


def test_the_same_prompt_draws_the_same_bytes():
    def png(prompt):
        buffer = io.BytesIO()
        render_storyboard(prompt, seed=3, width=160, height=90, label="x").save(buffer, format="PNG")
        return buffer.getvalue()

    assert png("a coastal path at dawn") == png("a coastal path at dawn")
    assert png("a coastal path at dawn") != png("a city street at night, rain")


def test_figures_have_heads_and_bodies_in_their_portrait_colours():
    from sparkle_motion_dagster.resources.keyframes import CharacterReference
    from sparkle_motion_dagster.resources.keyframes.storyboard import render_portrait, traits_of

    portrait = render_portrait(name="The Fox", description="A fox with orange fur.", style="", seed=1, size=128)
    hair, skin, clothes = traits_of(portrait)
    assert clothes == (230, 120, 30)  # "orange fur" read as the figure's clothes colour
    picture = np.asarray(render_storyboard("an open field", seed=1, width=320, height=180, references=(
        CharacterReference("fox", "The Fox", portrait, "x"),)).convert("RGB")).astype(int)
    near = lambda colour: (np.abs(picture - np.array(colour)).sum(axis=2) < 40)  # noqa: E731
    rows_clothes, rows_skin = np.nonzero(near(clothes).any(axis=1))[0], np.nonzero(near(skin).any(axis=1))[0]
    assert len(rows_clothes) > 10 and len(rows_skin) > 5
    assert rows_skin.min() < rows_clothes.min()  # a head above a body
