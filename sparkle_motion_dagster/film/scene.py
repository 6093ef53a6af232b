"""Where and when a shot happens: a small scene vocabulary read from words.

A :class:`Scene` is a setting (city, coast, forest, mountain, desert, interior,
field), a time of day (dawn, day, dusk, night) and the weather (clear, fog,
rain, snow). :func:`read_scene` finds them in text (a keyframe's prompt, a
shot's description, the film's prompt) by whole words; what the text does not
say comes from ``fallback`` (say, the film's scene), else the defaults (a field
by day, clear). The same text always gives the same scene. Dagster-free: the
template planner and the storyboard renderer use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

SETTINGS = ("city", "coast", "forest", "mountain", "desert", "interior", "field")
TIMES = ("dawn", "day", "dusk", "night")
WEATHERS = ("clear", "fog", "rain", "snow")

# Words that name each value, as whole words (a trailing "s" is also accepted).
SETTING_WORDS = {
    "city": "city town street avenue alley alleyway downtown skyline rooftop roof metropolis square market "
            "subway station neon skyscraper tower traffic sidewalk boulevard",
    "coast": "coast coastal beach sea ocean shore seashore seaside harbor harbour pier cliff bay lighthouse "
             "dock wave surf lake river tide island",
    "forest": "forest wood woods woodland grove jungle tree pine pines oak birch thicket glade orchard",
    "mountain": "mountain mountains peak summit ridge alpine pass valley glacier crag",
    "desert": "desert dune dunes sand sands canyon mesa oasis wasteland",
    "interior": "room kitchen house home hall library office cafe café bar attic bedroom studio inside indoors "
                "interior apartment shop classroom corridor cabin church museum theater theatre",
    "field": "field fields meadow farm prairie garden park countryside hill hills pasture plain village",
}
TIME_WORDS = {
    "dawn": "dawn sunrise daybreak morning first-light",
    "day": "day daylight noon midday afternoon sunny sunlit",
    "dusk": "dusk sunset twilight evening sundown golden-hour",
    "night": "night midnight nighttime moon moonlight moonlit stars starlit dark tonight",
}
WEATHER_WORDS = {
    "fog": "fog foggy mist misty haze hazy murky",
    "rain": "rain rainy raining rainfall drizzle downpour storm stormy wet thunderstorm",
    "snow": "snow snowy snowing snowfall blizzard frost frosty winter icy",
    "clear": "clear cloudless bright",
}


def _lexicon(table: dict[str, str]) -> dict[str, str]:
    return {word: value for value, words in table.items() for word in words.split()}


_SETTING, _TIME, _WEATHER = _lexicon(SETTING_WORDS), _lexicon(TIME_WORDS), _lexicon(WEATHER_WORDS)


@dataclass(frozen=True)
class Scene:
    """A shot's setting, time of day and weather (values of SETTINGS, TIMES, WEATHERS)."""

    setting: str = "field"
    time: str = "day"
    weather: str = "clear"

    def words(self) -> str:
        """The scene as prompt words a reader (and :func:`read_scene`) understands."""
        where = {"city": "city street", "coast": "coastal path", "forest": "forest", "mountain": "mountain pass",
                 "desert": "desert", "interior": "interior room", "field": "open field"}[self.setting]
        when = {"dawn": "at dawn", "day": "by day", "dusk": "at dusk", "night": "at night"}[self.time]
        weather = {"clear": "clear sky", "fog": "fog", "rain": "rain", "snow": "snow"}[self.weather]
        return f"{where} {when}, {weather}"


def _first(words: list[str], lexicon: dict[str, str]) -> str | None:
    for word in words:
        found = lexicon.get(word) or (lexicon.get(word[:-1]) if word.endswith("s") else None)
        if found:
            return found
    return None


def scene_words(text: str) -> list[str]:
    """The lower-case words of ``text`` (hyphenated words kept whole)."""
    return re.findall(r"[a-zà-ÿ]+(?:-[a-zà-ÿ]+)*", text.lower())


def read_scene(text: str, fallback: Scene | None = None) -> Scene:
    """The scene ``text`` describes; what it leaves out comes from ``fallback`` (else the defaults)."""
    words = scene_words(text)
    base = fallback or Scene()
    return replace(base, setting=_first(words, _SETTING) or base.setting,
                   time=_first(words, _TIME) or base.time, weather=_first(words, _WEATHER) or base.weather)
