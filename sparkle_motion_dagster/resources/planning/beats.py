"""The template planner's cast and lines: who the story is about, and what they say at each beat.

:func:`cast_roles` makes the film's two characters from the people and animals
a prompt names (``film/story.py``): "a lantern keeper" becomes *The Lantern
Keeper*, "a fox" *The Fox*, a proper name stays itself. Only where the prompt
names fewer than two (or a group, "two friends") do stock names fill in. Each
gets a description naming hair and clothes colours (fur, for an animal), which
the portrait renderer and the IP-Adapter read.

:func:`dialogue_lines` writes four lines, one per beat (setup, meeting, turn,
resolution), from a small phrase grammar whose slots are filled with the
story's verb, place and time of day, never with the prompt itself, so every
line is a sentence. The seed picks one of a few line sets. Deterministic and
Dagster-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sparkle_motion_dagster.film.story import ANIMALS, FEMALE, MALE, Being, Story

NAMES = ["Ava", "Miko", "Jun", "Rosa", "Theo", "Lena", "Omar", "Iris", "Kai", "Noor", "Sam", "Yara"]
HAIR = ["black", "brown", "auburn", "blonde", "grey", "silver", "ginger"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "teal", "orange", "navy"]
GARMENTS = ["coat", "cloak", "jacket", "scarf", "sweater"]
# How each time of day is named in a line.
PERIODS = {"dawn": ("morning", "this morning"), "day": ("day", "today"), "dusk": ("evening", "this evening"),
           "night": ("night", "tonight")}
# Where a scene is, when the prompt names no place of its own.
SETTING_PLACES = {"city": ("in", "the city"), "coast": ("by", "the sea"), "forest": ("in", "the woods"),
                  "mountain": ("on", "the mountain"), "desert": ("in", "the desert"), "interior": ("in", "this room"),
                  "field": ("in", "the fields")}

# One line per beat (setup, meeting, turn, resolution), spoken by "a" or "b". Slots: {vp} what "a" does
# there ("walk the foggy wood"), {vp_past}, {vp_pp}; {place} ("the foggy wood"), {in_place} ("in the
# foggy wood"); {period} ("morning"), {periods}, {today} ("this morning"); {a_call}, {b_call}: how each
# is addressed ("keeper", "fox", "Mara"); {is}: "is" or "are", agreeing with the place. Capitalised
# slot names give capitalised values.
LINE_SETS = [
    [("a", "I {vp} every {period}, and it is always this quiet."),
     ("b", "Not {today}, {a_call}. {Today} you are not alone {in_place}."),
     ("a", "I have {vp_pp} alone for years, {b_call}. Why show yourself now?"),
     ("b", "Because {place} {is} kinder to two than to one. Lead on, and I will follow.")],
    [("a", "Some {periods} I wonder why I still {vp}."),
     ("b", "Perhaps you were waiting for someone, {a_call}."),
     ("a", "For you, {b_call}? I never thought I would meet anyone {in_place}."),
     ("b", "Then stay a while. {Place} can wait until tomorrow.")],
    [("a", "{Today} I {vp_past}, the same as always."),
     ("b", "And {today} you found me, {a_call}."),
     ("a", "I did not come looking for company, {b_call}."),
     ("b", "No one ever does. Come, {place} {is} kinder with a friend.")],
]


@dataclass(frozen=True)
class Role:
    """A character of the film: id, name, how the others address it, description and voice gender."""

    id: str
    name: str
    call: str
    description: str
    gender: str | None = None


def _pick(options: list[str], base: int, salt: int, avoid: str | None = None) -> str:
    index = (base >> salt) % len(options)
    return options[(index + 1) % len(options)] if options[index] == avoid else options[index]


def _article(noun: str) -> str:
    return ("An " if noun[:1] in "aeiou" else "A ") + noun


def _looks(being: Being | None, base: int, salt: int, avoid: str | None) -> tuple[str, str]:
    """(what it looks like, its clothes colour): hair and clothes for a person, fur for an animal."""
    if being is not None and being.animal:
        return f"with {ANIMALS[being.noun.split()[-1]]}", ANIMALS[being.noun.split()[-1]].split()[0]
    hair = _pick(HAIR, base, salt)
    colour = _pick(COLOURS, base, salt + 3, avoid)
    garment = _pick(GARMENTS, base, salt + 6)
    return f"with {hair} hair and {_article(colour).lower()} {garment}", colour


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "character"


def cast_roles(story: Story, base: int) -> list[Role]:
    """The film's two characters, from the prompt's beings and, where it names fewer, stock names."""
    beings = [b for b in story.beings if b.count == 1][:2]
    group = next((b for b in story.beings if b.count > 1), None)
    first = base % len(NAMES)
    stock = [NAMES[first], NAMES[(first + 1 + (base >> 8) % (len(NAMES) - 1)) % len(NAMES)]]
    roles: list[Role] = []
    avoid = None
    for index in range(2):
        salt = 4 + index * 9
        being = beings[index] if index < len(beings) else None
        looks, colour = _looks(being, base, salt, avoid)
        avoid = colour
        if being is not None and being.proper:
            name = " ".join(being.words)
            role = Role(_slug(name), name, being.words[0], f"{name}, {looks}.")
        elif being is not None:
            name = "The " + " ".join(w.capitalize() for w in being.noun.split())
            head = being.noun.split()[-1]
            gender = "female" if head in FEMALE else "male" if head in MALE else None
            role = Role(_slug(being.noun), name, head, f"{_article(being.noun)} {looks}.", gender)
        else:
            name = next(n for n in stock if n not in {r.name for r in roles})
            what = f"one of two {group.noun}s" if group else "a companion" if roles else "a traveller"
            role = Role(_slug(name), name, name, f"{name}, {what}, {looks}.")
        if role.id in {r.id for r in roles}:
            role = Role(f"{role.id}_2", role.name + " Too", role.call, role.description, role.gender)
        roles.append(role)
    return roles


def _slots(story: Story, roles: list[Role]) -> dict[str, str]:
    period, today = PERIODS[story.scene.time]
    if story.place is not None:
        preposition, place = story.place.preposition, story.place.phrase
    elif story.scene.setting != "field" or story.scene != type(story.scene)():
        preposition, place = SETTING_PLACES[story.scene.setting]
    else:
        preposition, place = "", "this place"
    in_place = f"{preposition} {place}" if preposition else "here"
    if story.verb is not None and story.action:
        verb, action = story.verb, story.action
        vp, vp_past, vp_pp = (f"{form} {action}" for form in (verb.base, verb.past, verb.participle))
    else:
        destination = f"to {place}" if preposition else "here"
        vp, vp_past, vp_pp = (f"{form} {destination}" for form in ("come", "came", "come"))
    head = place.split()[-1]
    plural = head.endswith("s") and not head.endswith(("ss", "us", "is"))
    values = {"is": "are" if plural else "is", "vp": vp, "vp_past": vp_past, "vp_pp": vp_pp, "place": place,
              "in_place": in_place,
              "period": period, "periods": period + "s", "today": today,
              "a_call": roles[0].call, "b_call": roles[1].call}
    return {**values, **{key.capitalize(): value[:1].upper() + value[1:] for key, value in values.items()}}


def dialogue_lines(story: Story, roles: list[Role], base: int) -> list[tuple[str, str]]:
    """Four (speaker, line) pairs, "a" or "b", one per beat, from the line set the seed picks."""
    slots = _slots(story, roles)
    return [(speaker, text.format(**slots)) for speaker, text in LINE_SETS[(base >> 16) % len(LINE_SETS)]]
