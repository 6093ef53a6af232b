"""Speech: one WAV per dialogue line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np

from ..dialogue import chunk_text, espeak_language, espeak_voice_for
from ..plan import VoiceProfile


@dataclass
class SpeechResult:
    samples: np.ndarray  # int16 mono
    sample_rate: int
    chunks: int
    voice: dict[str, Any] = field(default_factory=dict)


class SpeechEngine(dg.ConfigurableResource):
    """Interface: speak a line of dialogue in a character's voice.

    Long lines are split into chunks of at most ``max_chunk_chars`` (neural
    engines degrade past a few hundred characters) and joined with a short pause.
    """

    max_chunk_chars: int = 300
    chunk_pause_sec: float = 0.08

    @property
    def backend(self) -> str:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the audio for the same text and voice."""
        return {"backend": self.backend, **self.model_dump()}

    def synthesize_line(self, text: str, *, character_id: str, voice_profile: VoiceProfile) -> SpeechResult:
        pieces: list[np.ndarray] = []
        sample_rate = 0
        voice: dict[str, Any] = {}
        chunks = chunk_text(text, self.max_chunk_chars)
        for index, chunk in enumerate(chunks):
            samples, sample_rate, voice = self.synthesize_chunk(chunk, character_id=character_id, voice_profile=voice_profile)
            if index:
                pieces.append(np.zeros(int(self.chunk_pause_sec * sample_rate), dtype=np.int16))
            pieces.append(samples.astype(np.int16, copy=False))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        return SpeechResult(audio, sample_rate, len(chunks), voice)

    def synthesize_chunk(
        self, text: str, *, character_id: str, voice_profile: VoiceProfile
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        raise NotImplementedError


class EspeakSpeech(SpeechEngine):
    """Embedded speech: espeak-ng formant synthesis, a distinct voice per character.

    Robotic but real, instant and weight-free; GPL-3 (see the README).
    """

    words_per_minute: int = 165

    @property
    def backend(self) -> str:
        return "espeak-ng"

    def synthesize_chunk(self, text, *, character_id, voice_profile):
        from .. import espeak

        engine = espeak.engine()
        language = espeak_language(voice_profile.language, engine.has_voice)
        voice = espeak_voice_for(character_id, voice_profile, language=language, base_wpm=self.words_per_minute)
        samples = engine.synthesize(text, voice)
        return samples, engine.sample_rate, {
            "engine": f"espeak-ng {engine.version}",
            "voice": voice.name,
            "rate_wpm": voice.rate_wpm,
            "pitch": voice.pitch,
        }
