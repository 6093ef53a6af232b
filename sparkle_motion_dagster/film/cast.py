"""Who is in each keyframe: the cast of a base image, given by the plan or read from its prompt.

A base image may list its characters (``base_images[].characters``, character
ids). When it does not, the cast is what its prompt mentions: a character's id
or name (or the name's first word), as whole words, case-insensitive, with
accents folded (``Zoë`` matches ``zoe``), never inside a longer word (``ava``
is not in ``Avalon``). Dagster-free: the intake, the planners and the tests use it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any


ARTICLES = frozenset(("the", "a", "an"))


def fold(text: str) -> str:
    """Lower case without accents: what two spellings of one name have in common."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _terms(character_id: str, name: str) -> list[str]:
    """The words that name a character: its id (``_``/``-`` read as spaces), full name, first name
    (never an article: "The Fox" is named by "the fox" or "fox", not by "the")."""
    terms = {fold(character_id), fold(re.sub(r"[_-]+", " ", character_id)), fold(name)}
    words = fold(name).split()
    if words and words[0] in ARTICLES and len(words) > 1:
        words = words[1:]
        terms.add(" ".join(words))
    if len(words) > 1 and len(words[0].strip(".")) > 1:
        terms.add(words[0])
    return sorted(term.strip() for term in terms if term.strip())


def mentioned(prompt: str, characters: Iterable[Any]) -> list[str]:
    """The ids of ``characters`` (objects with ``id`` and ``name``) that ``prompt`` mentions, in
    the characters' order."""
    text = fold(prompt)
    found = []
    for character in characters:
        for term in _terms(character.id, character.name):
            if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text):
                found.append(character.id)
                break
    return found


def cast_of(plan: Any) -> dict[str, list[str]]:
    """Every base image's cast: the listed characters, or those its prompt mentions."""
    return {image.id: list(image.characters) if image.characters is not None
            else mentioned(image.prompt, plan.characters) for image in plan.base_images}


def fill_cast(plan: Any) -> Any:
    """The plan with every base image's cast written out (inferred where the plan gave none)."""
    cast = cast_of(plan)
    images = [image if image.characters is not None else image.model_copy(update={"characters": cast[image.id]})
              for image in plan.base_images]
    return plan.model_copy(update={"base_images": images})


def inferred_cast(document_plan: Any, plan: Any) -> dict[str, list[str]]:
    """The casts the intake read from prompts: base images of the submitted plan (a dict) that
    gave no ``characters``, with what ``plan`` (normalized) now lists for them."""
    raw = document_plan.get("base_images") if isinstance(document_plan, dict) else None
    given = {item.get("id") for item in raw or [] if isinstance(item, dict) and item.get("characters") is not None}
    return {image.id: list(image.characters or []) for image in plan.base_images if image.id not in given}
