"""Viseme streams: which mouth shape to show when, per dialogue line.

A stream is a list of ``{"t": seconds, "viseme": str, "phoneme": str}``
entries, each holding until the next one; it starts at ``t = 0`` and ends with
a ``sil`` entry where the speech stops. It is written beside each line's WAV as
``<line_id>.viseme.json`` (see :func:`viseme_document`).

Viseme set: the 15 visemes of Meta's OVR LipSync (``sil PP FF TH DD kk CH SS nn
RR aa E ih oh ou``), the set most rigs and avatar formats ship blend shapes
for. :data:`PRESTON_BLAIR` folds it onto the 10 classic 2D mouth shapes.

Where the phonemes come from
    * espeak-ng (the embedded engine): the PHONEME events of the very
      utterance that made the audio, with their positions in it — exact.
    * neural engines: espeak-ng is run on the same text only for its phoneme
      sequence and relative timing, which is then warped onto the neural
      audio. With word spans measured in that audio (VITS reports its own
      per-character durations) each word's phonemes are placed inside that
      word ("word-anchored"); otherwise the whole phoneme timeline is scaled
      between the first and last sample above an energy threshold ("scaled").

Phoneme names are espeak-ng's IPA. Multi-symbol phonemes (diphthongs,
r-coloured vowels) are split into their symbols, the phoneme's time shared
equally, so ``aɪ`` opens to ``aa`` and closes to ``ih``; affricates (``tʃ``,
``dʒ``) stay one symbol. ``h`` takes the shape of the sound after it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

VISEME_SET = "oculus-15"
VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")

# The Oculus set folded onto Preston Blair's mouth chart (rest, MBP, FV, L, etc, E, AI, O, U, WQ).
PRESTON_BLAIR = {
    "sil": "rest", "PP": "MBP", "FF": "FV", "TH": "L", "DD": "etc", "kk": "etc", "CH": "etc", "SS": "etc",
    "nn": "L", "RR": "etc", "aa": "AI", "E": "E", "ih": "E", "oh": "O", "ou": "WQ",
}

_SYMBOL_VISEME: dict[str, str | None] = {}
for _viseme, _symbols in {
    "PP": "p b m ɱ ʙ",
    "FF": "f v ʋ ɸ β",
    "TH": "θ ð",
    "DD": "t d ɾ ʔ ʈ ɖ c ɟ",
    "kk": "k g ɡ ŋ x ɣ q ɢ ç χ ʝ",
    "CH": "tʃ dʒ tɕ dʑ ʃ ʒ ɕ ʑ ʂ ʐ",
    "SS": "s z ts dz",
    "nn": "n l ɲ ɳ ɫ ʎ ɬ ɭ ɮ ɴ",
    "RR": "r ɹ ɻ ʁ ʀ ɚ ɝ ɺ ɽ",
    "aa": "a ɑ ɐ æ ʌ ä",
    "E": "e ɛ ə ɜ ɘ ø œ ɞ",
    "ih": "i ɪ y ʏ ɨ ᵻ j",
    "oh": "o ɔ ɒ ɤ",
    "ou": "u ʊ ɯ ɵ ʉ w ʍ ɥ",
}.items():
    for _symbol in _symbols.split():
        _SYMBOL_VISEME[_symbol] = _viseme
_SYMBOL_VISEME.update({"h": None, "ɦ": None})  # takes the shape of the following sound
_AFFRICATES = ("tʃ", "dʒ", "tɕ", "dʑ", "ts", "dz")
_SKIP = set("ˈˌːˑ'.,_-|‿ ")
# Modifier letters that colour the symbol before them (aspiration, palatalisation, rhoticity ...).
_MODIFIERS = set("ʰʲʷˠˤ˞ⁿˡ̃")
FALLBACK_VISEME = "DD"  # a consonant espeak names that the table does not know: a neutral, slightly open mouth


@dataclass(frozen=True)
class PhonemeSpan:
    """A phoneme (IPA, "" for a pause) from ``start`` to ``end`` seconds.

    ``text_position`` is the 1-based character index, in the spoken text, of
    the word it belongs to (0 when unknown).
    """

    start: float
    end: float
    phoneme: str
    text_position: int = 0


# --------------------------------------------------------------------------- phonemes -> visemes


def symbols(ipa: str) -> list[str]:
    """The IPA symbols of an espeak phoneme name: stress and length marks dropped, diacritics and
    modifier letters kept with their base, affricates as one symbol."""
    out: list[str] = []
    index = 0
    text = unicodedata.normalize("NFC", ipa)
    while index < len(text):
        char = text[index]
        pair = text[index:index + 2]
        if pair in _AFFRICATES:
            out.append(pair)
            index += 2
            continue
        index += 1
        if char in _SKIP or char.isspace():
            continue
        if (unicodedata.combining(char) or char in _MODIFIERS) and out:
            continue  # ignored: visemes do not see aspiration, nasalisation ...
        out.append(char)
    return out


def phoneme_visemes(ipa: str) -> list[str | None]:
    """The visemes a phoneme moves through (``["sil"]`` for a pause); ``None`` = shape of the next sound."""
    found: list[str | None] = []
    for symbol in symbols(ipa):
        viseme = _SYMBOL_VISEME.get(symbol, _SYMBOL_VISEME.get(unicodedata.normalize("NFD", symbol)[0], FALLBACK_VISEME))
        if not found or found[-1] != viseme or viseme is None:
            found.append(viseme)
    return found or ["sil"]


def viseme_for(ipa: str) -> str:
    """The main viseme of one phoneme (its first symbol's); ``sil`` for a pause."""
    if not symbols(ipa):
        return "sil"
    return next((viseme for viseme in phoneme_visemes(ipa) if viseme is not None), "kk")


# --------------------------------------------------------------------------- streams


def spans_from_events(events: Iterable[Any], duration_s: float) -> list[PhonemeSpan]:
    """Phoneme spans from espeak events (``espeak.EspeakEvent``): each phoneme lasts until the next
    one starts, the last one until ``duration_s``."""
    phonemes = [event for event in events if event.kind == "phoneme"]
    spans: list[PhonemeSpan] = []
    for index, event in enumerate(phonemes):
        start = min(max(event.t, 0.0), duration_s)
        end = phonemes[index + 1].t if index + 1 < len(phonemes) else duration_s
        spans.append(PhonemeSpan(start, min(max(end, start), duration_s), event.phoneme, event.text_position))
    return spans


def stream_from_spans(spans: Sequence[PhonemeSpan]) -> list[dict[str, Any]]:
    """The viseme stream of phoneme spans (times in seconds, rounded to the millisecond)."""
    pieces: list[list[Any]] = []  # [t, viseme | None, phoneme]
    last_end = 0.0
    for span in spans:
        if span.end <= span.start:
            continue
        if pieces and span.start > last_end + 0.001:
            pieces.append([last_end, "sil", ""])  # a pause the phonemes did not have (neural audio)
        visemes = phoneme_visemes(span.phoneme) if span.phoneme else ["sil"]
        step = (span.end - span.start) / len(visemes)
        pieces.extend([span.start + k * step, viseme, span.phoneme] for k, viseme in enumerate(visemes))
        last_end = max(last_end, span.end)
    following = "sil"
    for piece in reversed(pieces):  # h and friends take the following sound's shape
        if piece[1] is None:
            piece[1] = following if following != "sil" else "kk"
        following = piece[1]
    stream: list[dict[str, Any]] = []
    if not pieces or pieces[0][0] > 0.0005:
        stream.append({"t": 0.0, "viseme": "sil", "phoneme": ""})
    for t, viseme, phoneme in pieces:
        _append(stream, round(t, 3), viseme, phoneme)
    if stream[-1]["viseme"] != "sil":
        _append(stream, round(last_end, 3), "sil", "")
    return stream


def _append(stream: list[dict[str, Any]], t: float, viseme: str, phoneme: str) -> None:
    if stream and viseme == "sil" and stream[-1]["viseme"] == "sil":
        return  # one silence, not several
    if stream and t <= stream[-1]["t"]:
        stream[-1] = {"t": stream[-1]["t"], "viseme": viseme, "phoneme": phoneme}  # the earlier one had no time
        if len(stream) > 1 and stream[-2]["viseme"] == "sil" == viseme:
            stream.pop()
        return
    stream.append({"t": t, "viseme": viseme, "phoneme": phoneme})


def join_streams(parts: Sequence[tuple[float, Sequence[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Streams of consecutive chunks, each with its start offset in seconds, as one stream."""
    stream: list[dict[str, Any]] = []
    for offset, part in parts:
        for entry in part:
            _append(stream, round(offset + entry["t"], 3), entry["viseme"], entry["phoneme"])
    return stream or [{"t": 0.0, "viseme": "sil", "phoneme": ""}]


def fit_stream(stream: Sequence[dict[str, Any]], *, scale: float, end_s: float) -> list[dict[str, Any]]:
    """The stream of a line as the stitcher placed it: its times multiplied by ``scale`` (the
    fitted length over the spoken length; below 1 for speech sped up) and cut where the placed
    audio ends (``end_s``), where it ends in silence."""
    fitted: list[dict[str, Any]] = []
    for entry in stream:
        t = round(entry["t"] * scale, 3)
        if t >= end_s and fitted:
            break
        _append(fitted, min(t, end_s), entry["viseme"], entry["phoneme"])
    if not fitted or fitted[-1]["viseme"] != "sil":
        _append(fitted, round(end_s, 3), "sil", "")
    return fitted


def espeak_stream(events: Iterable[Any], duration_s: float) -> list[dict[str, Any]]:
    """The stream of an espeak utterance from its own events."""
    return stream_from_spans(spans_from_events(events, duration_s))


# --------------------------------------------------------------------------- neural audio


def speech_bounds(samples: np.ndarray, sample_rate: int, *, frame_sec: float = 0.01,
                  threshold_db: float = -35.0, floor: float = 100.0) -> tuple[float, float] | None:
    """First and last moment (seconds) of 10 ms frames louder than ``threshold_db`` below the loudest
    frame (and above ``floor`` on the int16 scale); None for silent audio."""
    raw = np.asarray(samples)
    audio = raw.astype(np.float64) * (32767.0 if raw.dtype.kind == "f" else 1.0)
    frame = max(1, int(round(frame_sec * sample_rate)))
    count = len(audio) // frame
    if count == 0:
        return None
    rms = np.sqrt(np.mean(audio[: count * frame].reshape(count, frame) ** 2, axis=1))
    threshold = max(rms.max() * 10 ** (threshold_db / 20), floor)
    loud = np.flatnonzero(rms >= threshold)
    if len(loud) == 0:
        return None
    return float(loud[0] * frame / sample_rate), float(min((loud[-1] + 1) * frame, len(audio)) / sample_rate)


def warp_spans(spans: Sequence[PhonemeSpan], anchors: Iterable[tuple[float, float]]) -> list[PhonemeSpan]:
    """Spans moved through the piecewise-linear map given by ``(source_t, target_t)`` anchors
    (anchors that would make the map go backwards are dropped; outside them it is flat)."""
    xs, ys = _monotonic(anchors)
    if len(xs) < 2:
        shift = (ys[0] - xs[0]) if xs else 0.0
        return [PhonemeSpan(s.start + shift, s.end + shift, s.phoneme, s.text_position) for s in spans]
    moved = [PhonemeSpan(float(np.interp(s.start, xs, ys)), float(np.interp(s.end, xs, ys)), s.phoneme,
                         s.text_position) for s in spans]
    return [s for s in moved if s.end > s.start]


def _monotonic(anchors: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for x, y in sorted(anchors):
        if not xs or (x > xs[-1] and y >= ys[-1]):
            xs.append(x)
            ys.append(y)
    return xs, ys


def align_spans(spans: Sequence[PhonemeSpan], samples: np.ndarray, sample_rate: int,
                word_spans: Sequence[tuple[int, int, float, float]] | None = None) -> tuple[list[PhonemeSpan], str]:
    """Put phoneme spans (espeak's timing) onto other audio of the same text.

    ``word_spans``: ``(char_start, char_end, t_start, t_end)`` per word of the text (0-based,
    end exclusive) as measured in ``samples``: each word's phonemes are spread over that word's
    time; what lies between anchored words (pauses, words without a span) follows the
    piecewise-linear map between them. Without word spans the whole timeline is scaled onto
    the audio's speech (energy-trimmed). Returns the spans and ``word-anchored``, ``scaled``,
    ``no-phonemes`` or ``silent-audio``.
    """
    spoken = [s for s in spans if s.phoneme]
    if not spoken:
        return [], "no-phonemes"
    words: dict[int, tuple[float, float, float, float]] = {}  # text_position -> source span, target span
    owner: dict[int, tuple[float, float, float, float]] = {}
    for char_start, char_end, t_start, t_end in word_spans or ():
        positions = {s.text_position for s in spoken if char_start < s.text_position <= char_end}
        group = [s for s in spoken if s.text_position in positions]
        if group and t_end > t_start:
            mapping = (min(s.start for s in group), max(s.end for s in group), t_start, t_end)
            for position in positions:
                owner[position] = mapping
            words[char_start] = mapping
    if words:
        anchors = [(x0, y0) for x0, _, y0, _ in words.values()] + [(x1, y1) for _, x1, _, y1 in words.values()]
        xs, ys = _monotonic(anchors)
        moved: list[PhonemeSpan] = []
        for span in spans:
            mapping = owner.get(span.text_position) if span.phoneme else None
            if mapping is not None:
                x0, x1, y0, y1 = mapping
                scale = (y1 - y0) / (x1 - x0) if x1 > x0 else 0.0
                start, end = y0 + (span.start - x0) * scale, y0 + (span.end - x0) * scale
            elif len(xs) >= 2:
                start, end = float(np.interp(span.start, xs, ys)), float(np.interp(span.end, xs, ys))
            else:
                continue
            if end > start:
                moved.append(PhonemeSpan(start, end, span.phoneme, span.text_position))
        return sorted(moved, key=lambda s: s.start), "word-anchored"
    bounds = speech_bounds(samples, sample_rate)
    if bounds is None:
        return [], "silent-audio"
    return warp_spans(spans, [(spoken[0].start, bounds[0]), (spoken[-1].end, bounds[1])]), "scaled"


def espeak_phoneme_spans(text: str, language: str) -> list[PhonemeSpan]:
    """espeak-ng's phonemes for ``text`` (BCP 47 ``language``) with espeak's own timing."""
    from sparkle_motion_dagster.film.dialogue import DEFAULT_WPM, espeak_language
    from sparkle_motion_dagster.media import espeak

    engine = espeak.engine()
    voice_language = espeak_language(language, engine.has_voice)
    voice = espeak.EspeakVoice(f"{voice_language}+{espeak.VARIANT_PREFIX}m1", DEFAULT_WPM, 50)
    audio, events = engine.synthesize_events(text, voice)
    return spans_from_events(events, len(audio) / engine.sample_rate)


def aligned_stream(text: str, language: str, samples: np.ndarray, sample_rate: int,
                   word_spans: Sequence[tuple[int, int, float, float]] | None = None) -> tuple[list[dict[str, Any]], str]:
    """The viseme stream of neural ``samples`` speaking ``text``, and how it was timed."""
    spans, method = align_spans(espeak_phoneme_spans(text, language), samples, sample_rate, word_spans)
    return stream_from_spans(spans), f"espeak-phonemes-{method}"


# --------------------------------------------------------------------------- the file


def viseme_document(visemes: Sequence[dict[str, Any]], *, line_id: str, character_id: str, text: str,
                    backend: str, source: str, sample_rate: int, duration_s: float) -> dict[str, Any]:
    """The content of ``<line_id>.viseme.json``."""
    return {
        "version": 1,
        "line_id": line_id,
        "character_id": character_id,
        "text": text,
        "backend": backend,
        "viseme_set": VISEME_SET,
        "visemes_available": list(VISEMES),
        "source": source,
        "sample_rate": sample_rate,
        "duration_s": round(duration_s, 6),
        "visemes": list(visemes),
    }


def to_preston_blair(stream: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stream on Preston Blair's 10 mouth shapes (consecutive repeats merged)."""
    out: list[dict[str, Any]] = []
    for entry in stream:
        shape = PRESTON_BLAIR[entry["viseme"]]
        if not out or out[-1]["viseme"] != shape:
            out.append({"t": entry["t"], "viseme": shape, "phoneme": entry["phoneme"]})
    return out
