"""What a one-line story prompt is about: who is in it, what they do, where and when.

:func:`read_story` reads a prompt such as "A lantern keeper walks a foggy wood
and meets a fox" with small word lists, no language model: the people and
animals it names (the subject, "a lantern keeper", and whom it meets, "a fox";
or proper names, "Mara"), the first thing the subject does ("walks a foggy
wood", kept as a verb with its forms: walk, walked, walking), the place ("the
foggy wood", with the preposition it takes: *in* the wood, *on* the path) and
the scene (``film/scene.py``). What it cannot find is left empty for the
planner to fill. Deterministic and Dagster-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sparkle_motion_dagster.film.scene import SETTING_WORDS, TIME_WORDS, WEATHER_WORDS, Scene, read_scene

DETERMINERS = frozenset("a an the one my our his her their this that its some".split())
COUNTS = {"two": 2, "three": 3, "pair": 2, "couple": 2, "both": 2}
CONJUNCTIONS = frozenset("and but then while as , ; . ! ?".split())
# Helping verbs end a noun phrase and come before the verb: "the fox will not leave", "won't leave".
AUXILIARIES = frozenset("will would can could shall should may might must do does did not never won't can't "
                        "don't doesn't didn't wouldn't couldn't shouldn't isn't aren't wasn't weren't".split())
PREPOSITIONS = frozenset("in on at through across along into onto over under beneath by near past toward towards "
                         "to from around up down beside behind inside outside within before after during among "
                         "between against beyond".split())

# Verbs a story prompt uses, with their irregular (past, past participle) forms.
IRREGULAR = {"meet": ("met", "met"), "find": ("found", "found"), "run": ("ran", "run"), "ride": ("rode", "ridden"),
             "fly": ("flew", "flown"), "sing": ("sang", "sung"), "fight": ("fought", "fought"),
             "lose": ("lost", "lost"), "leave": ("left", "left"), "seek": ("sought", "sought"),
             "take": ("took", "taken"), "bring": ("brought", "brought"), "build": ("built", "built"),
             "sit": ("sat", "sat"), "stand": ("stood", "stood"), "keep": ("kept", "kept"), "hide": ("hid", "hidden"),
             "drive": ("drove", "driven"), "swim": ("swam", "swum"), "go": ("went", "gone"),
             "come": ("came", "come"), "see": ("saw", "seen"), "hold": ("held", "held"), "sail": ("sailed", "sailed"),
             "wake": ("woke", "woken"), "fall": ("fell", "fallen"), "wind": ("wound", "wound"),
             "make": ("made", "made"), "read": ("read", "read"), "write": ("wrote", "written"),
             "sleep": ("slept", "slept"), "feed": ("fed", "fed"), "lead": ("led", "led")}
REGULAR = ("walk wander meet explore cross climb race follow chase discover watch guard carry dance wait return travel "
           "hike stroll roam journey visit enter tend light hunt greet save rescue help face reach escape search "
           "paint play dream open drift row paddle patrol trek march skate ski cycle jog limp crawl tiptoe sneak "
           "learn cook bake fish study train practice rehearse perform argue talk whisper share trade deliver").split()
VERBS = sorted(set(REGULAR) | set(IRREGULAR))

# Nouns for living beings: animals (with the colour of their fur or feathers) and people.
ANIMALS = {"fox": "orange fur", "wolf": "grey fur", "owl": "brown feathers", "cat": "black fur", "dog": "brown fur",
           "bear": "brown fur", "crow": "black feathers", "raven": "black feathers", "deer": "brown fur",
           "rabbit": "white fur", "hare": "brown fur", "horse": "brown coat", "bird": "blue feathers",
           "dragon": "green scales", "whale": "grey skin", "mouse": "grey fur", "lion": "golden fur",
           "tiger": "orange fur", "badger": "grey fur", "otter": "brown fur", "seal": "grey fur",
           "gull": "white feathers", "heron": "grey feathers", "stag": "brown fur", "robot": "silver plating",
           "ghost": "white robe", "spirit": "white robe"}
PEOPLE = ("man woman boy girl child kid friend stranger traveler traveller keeper king queen prince princess knight "
          "witch wizard sailor fisherman fisher soldier detective doctor nurse teacher student mother father sister "
          "brother daughter son grandmother grandfather widow widower farmer hunter painter poet musician dancer "
          "singer thief guard monk nun priest pilgrim wanderer hermit shepherd baker courier pilot captain crew "
          "lover couple neighbor neighbour chef cook writer artist scientist inventor robot ghost spirit giant "
          "orphan mayor boss clerk driver climber runner walker ranger scout warden").split()
FEMALE = frozenset("woman girl queen princess witch nun mother sister daughter grandmother widow".split())
MALE = frozenset("man boy king prince monk father brother son grandfather widower fisherman".split())
# Places beyond the scene words, and the preposition each takes ("on the path", "in the wood").
PLACES = frozenset(" ".join(SETTING_WORDS.values()).split()) | frozenset(
    "path road trail track lane bridge bank ruins castle tower cave garden market square platform "
    "highway rooftops streets woods hillside clearing marsh swamp moor cliffs docks".split())
ON_PLACES = frozenset("path road trail track lane bridge street avenue boulevard sidewalk beach shore coast ridge "
                      "mountain hillside pier dock docks cliff cliffs platform rooftop roof highway moor plain "
                      "island bank slope peak summit pass glacier".split())
BY_PLACES = frozenset("sea ocean lake river water".split())
NOT_BEINGS = frozenset(" ".join((*TIME_WORDS.values(), *WEATHER_WORDS.values())).split()) | PLACES


def _verb_forms() -> dict[str, str]:
    forms = {}
    for base in VERBS:
        past, participle = IRREGULAR.get(base) or (regular_past(base),) * 2
        for form in (base, third_person(base), past, participle, gerund(base)):
            forms.setdefault(form, base)
    return forms


def third_person(base: str) -> str:
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def regular_past(base: str) -> str:
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        return base[:-1] + "ied"
    return base + "ed"


def gerund(base: str) -> str:
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        return base[:-1] + "ing"
    if base in ("run", "swim", "sit", "jog", "skip", "plan", "trek", "win", "dig"):
        return base + base[-1] + "ing"
    return base + "ing"


VERB_FORMS = _verb_forms()


@dataclass(frozen=True)
class Verb:
    """A verb with the forms the dialogue needs."""

    base: str

    @property
    def past(self) -> str:
        return (IRREGULAR.get(self.base) or (regular_past(self.base),))[0]

    @property
    def participle(self) -> str:
        return (IRREGULAR.get(self.base) or (None, regular_past(self.base)))[1]

    @property
    def ing(self) -> str:
        return gerund(self.base)


@dataclass(frozen=True)
class Being:
    """Someone the prompt names: a proper name (``Mara``) or a noun phrase (``lantern keeper``)."""

    words: tuple[str, ...]
    proper: bool = False
    count: int = 1

    @property
    def head(self) -> str:
        return self.words[-1]

    @property
    def noun(self) -> str:
        """The singular noun phrase ("lantern keeper", "friend")."""
        text = " ".join(self.words)
        return text[:-1] if self.count > 1 and text.endswith("s") and not text.endswith("ss") else text

    @property
    def animal(self) -> bool:
        return not self.proper and self.noun.split()[-1] in ANIMALS


@dataclass(frozen=True)
class Place:
    """Where the story happens: a noun phrase and its preposition ("in", "the foggy wood")."""

    preposition: str
    phrase: str


@dataclass(frozen=True)
class Story:
    """What :func:`read_story` found (empty where the prompt does not say)."""

    beings: tuple[Being, ...] = ()
    verb: Verb | None = None
    action: str = ""  # the verb's complement up to its place, with "the": "the foggy wood", "through the city"
    place: Place | None = None
    scene: Scene = field(default_factory=Scene)


def _tokens(prompt: str) -> list[str]:
    first = re.split(r"(?<=[.!?])\s+", prompt.strip(), maxsplit=1)[0]
    first = re.sub(r"(?<=[A-Za-zÀ-ÿ])['’]s\b", " ;", first)  # "the keeper's fox": the keeper ; fox
    return [token.replace("’", "'") for token in re.findall(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’-]*|[,;.!?]", first)]


def _is_being(words: list[str]) -> bool:
    head = words[-1].lower()
    singular = head[:-1] if head.endswith("s") and not head.endswith("ss") else head
    if head in NOT_BEINGS or singular in NOT_BEINGS:
        return False
    return (singular in ANIMALS or singular in PEOPLE or head in PEOPLE
            or (len(singular) > 4 and singular.endswith(("er", "or", "ist", "ian"))))


def _phrases(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """Noun phrases with the preposition (or "") before each, split at verbs, prepositions,
    conjunctions and punctuation."""
    found: list[tuple[str, list[str]]] = []
    preposition, current = "", []
    for token in tokens + ["."]:
        low = token.lower()
        if low in PREPOSITIONS or low in CONJUNCTIONS or low in VERB_FORMS or low in AUXILIARIES:
            if current:
                found.append((preposition, current))
            preposition, current = (low if low in PREPOSITIONS else ""), []
        elif low not in DETERMINERS and low not in COUNTS and low != "of":
            current.append(token)
    return found


def _subject(tokens: list[str]) -> list[Being]:
    beings = []
    count = next((COUNTS[t.lower()] for t in tokens if t.lower() in COUNTS), 1)
    for _, words in _phrases(tokens):
        proper = [w for i, w in enumerate(words) if w[:1].isupper() and (i or tokens[0] != w or len(words) == 1)
                  and w.lower() not in VERB_FORMS]
        if proper and words[0][:1].isupper() and tokens[0] == words[0] and words[0].lower() not in PEOPLE \
                and words[0].lower() not in ANIMALS and not _is_being(words):
            beings.append(Being((words[0],), proper=True))
        elif proper and not _is_being(words):
            beings.append(Being(tuple(proper[:2]), proper=True))
        elif _is_being(words):
            beings.append(Being(tuple(w.lower() for w in words), count=count))
    return beings


def _base(word: str) -> str:
    """A verb's base form: from the word list, else by undoing a third-person "-s"."""
    if word in VERB_FORMS:
        return VERB_FORMS[word]
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def _verb_at(tokens: list[str]) -> int | None:
    """Where the subject's verb is: the first known verb form (not after an article), else the word
    after a person's or an animal's noun when it ends in "s" ("A robot learns to dance")."""
    for i, token in enumerate(tokens):
        if i and token.lower() in VERB_FORMS and tokens[i - 1].lower() not in DETERMINERS:
            return i
    for i, token in enumerate(tokens[:-1]):  # "will not leave": the word after the helping verbs
        if i and token.lower() in AUXILIARIES and tokens[i + 1].lower() not in AUXILIARIES | DETERMINERS:
            return i + 1
    for i, token in enumerate(tokens[:-1]):
        follower = tokens[i + 1].lower()
        if _is_being([token]) and follower.endswith("s") and follower not in PREPOSITIONS | CONJUNCTIONS:
            return i + 1
    return None


def read_story(prompt: str) -> Story:
    """The beings, first action, place and scene of a story prompt (see the module docstring)."""
    tokens = _tokens(prompt)
    at = _verb_at(tokens)
    subject = _subject(tokens[:at] if at is not None else tokens)
    rest = tokens[at + 1:] if at is not None else []
    beings = list(subject)
    for _, words in _phrases(rest):
        low = [w.lower() for w in words]
        if _is_being(words) and not any(w[:1].isupper() for w in words):
            beings.append(Being(tuple(low)))
        elif any(w[:1].isupper() for w in words) and not _is_being(words) and low[-1] not in PLACES:
            beings.append(Being(tuple(words[:2]), proper=True))
    place = None
    for preposition, words in _phrases(tokens):
        low = [w.lower() for w in words]
        ends = [i for i, w in enumerate(low) if w in PLACES or (w.endswith("s") and w[:-1] in PLACES)]
        if ends and not _is_being(words[:ends[-1] + 1]):  # "a neon rooftop" in "a neon rooftop reconcile"
            low = low[:ends[-1] + 1]
            head = low[-1] if low[-1] in PLACES else low[-1][:-1]
            place = Place(preposition if preposition in ("in", "on", "at", "by") else
                          "by" if head in BY_PLACES else "on" if head in ON_PLACES else "in", "the " + " ".join(low))
            break
    action = ""
    if at is not None and place is not None:  # the first clause, when it goes somewhere: "walks a foggy wood"
        clause = []
        for token in rest:
            if token.lower() in CONJUNCTIONS or token.lower() in VERB_FORMS:
                break
            clause.append(token)
        phrases = _phrases(clause)
        if phrases and place.phrase == "the " + " ".join(w.lower() for w in phrases[0][1]):
            action = f"{phrases[0][0]} {place.phrase}".strip()  # the place right after the verb
    verb = Verb(_base(tokens[at].lower())) if at is not None and action else None
    unique = []
    for being in beings:
        if being.noun not in {b.noun for b in unique}:
            unique.append(being)
    return Story(beings=tuple(unique), verb=verb, action=action, place=place, scene=read_scene(prompt))
