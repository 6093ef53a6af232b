"""Dialogue text and voices: chunking long lines, choosing a voice per character."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.media.espeak import FEMALE_VARIANTS, MALE_VARIANTS, VARIANT_PREFIX, EspeakVoice

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")

STYLE_RATE_OFFSET = {"calm": -15, "confessional": -10, "whisper": -20, "sad": -15, "excited": 25, "urgent": 30, "angry": 15}
DEFAULT_WPM = 165


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Split at sentence ends, then at word boundaries, into pieces of at most ``max_chars``."""
    text = " ".join(text.split())
    chunks: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            chunks.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if not sentence:
            continue
        if chunks and len(chunks[-1]) + 1 + len(sentence) <= max_chars:
            chunks[-1] = f"{chunks[-1]} {sentence}"
        else:
            chunks.append(sentence)
    return chunks


def _stable_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "little")


def espeak_language(language: str, available: Callable[[str], bool]) -> str:
    """The espeak-ng language for a BCP 47 tag: exact, then known aliases, then the primary subtag."""
    tag = language.strip().lower().replace("_", "-")
    candidates = [tag, {"en-gb": "en-gb-x-rp", "zh": "cmn", "zh-cn": "cmn"}.get(tag, ""), tag.split("-")[0], "en"]
    for candidate in candidates:
        if candidate and available(candidate):
            return candidate
    return "en"


def espeak_voice_for(character_id: str, profile: VoiceProfile, *, language: str, base_wpm: int = DEFAULT_WPM) -> EspeakVoice:
    """A distinct, stable voice per character; explicit profile values win."""
    pick = _stable_int(character_id, profile.style or "")
    if profile.variant:
        variant = profile.variant.removeprefix(VARIANT_PREFIX)
    else:
        pool = {"female": FEMALE_VARIANTS, "male": MALE_VARIANTS}.get(profile.gender or "", FEMALE_VARIANTS + MALE_VARIANTS)
        variant = pool[pick % len(pool)]
    if variant not in FEMALE_VARIANTS + MALE_VARIANTS:
        raise ValueError(
            f"voice_profile.variant {profile.variant!r} is not one of {', '.join(FEMALE_VARIANTS + MALE_VARIANTS)}"
        )
    pitch = profile.pitch if profile.pitch is not None else 35 + (pick >> 8) % 31
    return EspeakVoice(name=f"{language}+{VARIANT_PREFIX}{variant}", rate_wpm=espeak_rate(profile, base_wpm),
                       pitch=int(pitch))


def espeak_rate(profile: VoiceProfile, base_wpm: int = DEFAULT_WPM) -> int:
    """The espeak-ng rate (words per minute) a voice profile speaks at: its own, or the style's."""
    rate = profile.rate if profile.rate is not None else base_wpm + STYLE_RATE_OFFSET.get((profile.style or "").lower(), 0)
    return int(rate)


def estimate_speech_seconds(text: str, words_per_second: float = 2.6) -> float:
    """The planner's words-per-second estimate, with a floor for very short lines."""
    words = max(len(text.split()), 1)
    return round(max(words / words_per_second + 0.3, 0.8), 2)
