"""Speech: one WAV per dialogue line, and its viseme stream.

Engines (all ``SpeechEngine`` resources, chosen by :func:`speech_from_env`):

* ``EspeakSpeech`` (``resources/speech.py``): espeak-ng through ctypes, in
  process, no weights. The default, when neither variable below is set.
* ``VitsSpeech`` (``resources/vits.py``): transformers ``VitsModel``
  (MMS-TTS), in process. Selected by ``TTS_VITS_MODEL``.
* ``ChatterboxSpeech`` (``resources/chatterbox.py``): Chatterbox in a
  long-lived worker (``speech_worker.py``) under another environment's
  Python. Selected by ``TTS_CHATTERBOX_PYTHON``; wins over VITS.

Every engine returns a :class:`SpeechResult` whose ``visemes`` is the line's
viseme stream (see ``visemes.py``): from the synthesis events for espeak-ng,
from espeak-ng phonemes timed to the neural audio otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np

from sparkle_motion_dagster.film.dialogue import chunk_text, espeak_language, espeak_voice_for
from sparkle_motion_dagster.film.plan import VoiceProfile


@dataclass
class SpeechResult:
    samples: np.ndarray  # int16 mono
    sample_rate: int
    chunks: int
    voice: dict[str, Any] = field(default_factory=dict)
    # [{"t": seconds from the start of ``samples``, "viseme": one of visemes.VISEMES, "phoneme": IPA}, ...]
    visemes: list[dict[str, Any]] = field(default_factory=list)
    viseme_source: str = ""  # how the stream was timed, e.g. "espeak-events"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


@dataclass
class ChunkSpeech:
    """One generation: a chunk of a line, with its viseme stream (times from the chunk's start)."""

    samples: np.ndarray  # int16 mono
    sample_rate: int
    voice: dict[str, Any]
    visemes: list[dict[str, Any]]
    viseme_source: str


class SpeechEngine(dg.ConfigurableResource):
    """Interface: speak a line of dialogue in a character's voice.

    Long lines are split into chunks of at most ``max_chunk_chars`` (neural
    engines degrade past a few hundred characters) and joined with a short pause.

    Engines implement ``synthesize_chunk`` (samples, rate, voice info) and may
    override ``synthesize_chunk_timed`` to supply their own viseme timing; the
    default times espeak-ng's phonemes to the returned audio.
    """

    max_chunk_chars: int = 300
    chunk_pause_sec: float = 0.08

    @property
    def backend(self) -> str:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the audio for the same text and voice."""
        return {"backend": self.backend, **self.model_dump()}

    def voice_fingerprint(self, character_id: str, voice_profile: VoiceProfile) -> dict[str, Any]:
        """What changes one character's audio beyond the profile's own values (e.g. the content of a
        reference recording it names). Empty for engines that read nothing else."""
        return {}

    def split_text(self, text: str) -> list[str]:
        """The generations a line is spoken in."""
        return chunk_text(text, self.max_chunk_chars)

    def synthesize_line(self, text: str, *, character_id: str, voice_profile: VoiceProfile) -> SpeechResult:
        from sparkle_motion_dagster.film import visemes

        pieces: list[np.ndarray] = []
        parts: list[tuple[float, list[dict[str, Any]]]] = []
        sources: list[str] = []
        sample_rate = 0
        voice: dict[str, Any] = {}
        offset = 0
        chunks = self.split_text(text)
        for index, chunk in enumerate(chunks):
            spoken = self.synthesize_chunk_timed(chunk, character_id=character_id, voice_profile=voice_profile)
            if sample_rate and spoken.sample_rate != sample_rate:
                raise RuntimeError(f"{self.backend}: chunk {index} came back at {spoken.sample_rate} Hz, "
                                   f"the line's first chunk at {sample_rate} Hz")
            sample_rate, voice = spoken.sample_rate, spoken.voice
            if index:
                pause = np.zeros(int(self.chunk_pause_sec * sample_rate), dtype=np.int16)
                pieces.append(pause)
                offset += len(pause)
            pieces.append(spoken.samples.astype(np.int16, copy=False))
            parts.append((offset / sample_rate, spoken.visemes))
            sources.append(spoken.viseme_source)
            offset += len(spoken.samples)
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        source = sources[0] if len(set(sources)) == 1 else "+".join(sorted(set(sources)))
        return SpeechResult(audio, sample_rate, len(chunks), voice, visemes.join_streams(parts), source)

    def synthesize_chunk_timed(self, text: str, *, character_id: str, voice_profile: VoiceProfile) -> ChunkSpeech:
        from sparkle_motion_dagster.film import visemes

        samples, sample_rate, voice = self.synthesize_chunk(text, character_id=character_id, voice_profile=voice_profile)
        stream, source = visemes.aligned_stream(text, voice_profile.language, samples, sample_rate)
        return ChunkSpeech(samples, sample_rate, voice, stream, source)

    def synthesize_chunk(
        self, text: str, *, character_id: str, voice_profile: VoiceProfile
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        raise NotImplementedError


class EspeakSpeech(SpeechEngine):
    """Embedded speech: espeak-ng formant synthesis, a distinct voice per character.

    Robotic but real, instant and weight-free; GPL-3 (see the README). Visemes
    come from the synthesis's own phoneme events.
    """

    words_per_minute: int = 165

    @property
    def backend(self) -> str:
        return "espeak-ng"

    def _speak(self, text, character_id, voice_profile):
        from sparkle_motion_dagster.media import espeak

        engine = espeak.engine()
        language = espeak_language(voice_profile.language, engine.has_voice)
        voice = espeak_voice_for(character_id, voice_profile, language=language, base_wpm=self.words_per_minute)
        samples, events = engine.synthesize_events(text, voice)
        return samples, events, engine.sample_rate, {
            "engine": f"espeak-ng {engine.version}",
            "voice": voice.name,
            "rate_wpm": voice.rate_wpm,
            "pitch": voice.pitch,
        }

    def synthesize_chunk(self, text, *, character_id, voice_profile):
        samples, _events, sample_rate, voice = self._speak(text, character_id, voice_profile)
        return samples, sample_rate, voice

    def synthesize_chunk_timed(self, text, *, character_id, voice_profile):
        from sparkle_motion_dagster.film import visemes

        samples, events, sample_rate, voice = self._speak(text, character_id, voice_profile)
        stream = visemes.espeak_stream(events, len(samples) / sample_rate)
        return ChunkSpeech(samples, sample_rate, voice, stream, "espeak-events")


# --------------------------------------------------------------------------- choosing an engine


def speech_from_env(environ: Mapping[str, str] | None = None) -> SpeechEngine | None:
    """The neural engine the environment asks for, or None for the embedded espeak-ng.

    ``TTS_CHATTERBOX_PYTHON`` (with ``TTS_CHATTERBOX_MODEL``, default the
    ``ResembleAI/chatterbox`` weights in the Hugging Face cache) selects
    Chatterbox through its worker; else ``TTS_VITS_MODEL`` selects VITS. Setting
    ``TTS_CHATTERBOX_MODEL`` without ``TTS_CHATTERBOX_PYTHON`` is an error (the
    pipeline's environment cannot import chatterbox-tts).
    """
    from sparkle_motion_dagster.resources.speech.chatterbox import ChatterboxSpeech
    from sparkle_motion_dagster.resources.speech.vits import VitsSpeech

    env = os.environ if environ is None else environ
    chatterbox = ChatterboxSpeech.from_env(env)
    if chatterbox is not None:
        return chatterbox
    return VitsSpeech.from_env(env)


def describe(environ: Mapping[str, str] | None = None, *, probe: bool = True) -> dict[str, Any]:
    """What ``sparkle-motion doctor`` reports for the dialogue stage: the engine the environment
    selects, whether it can run, and why. Loads no model; ``probe`` lets Chatterbox's check run
    its Python (a few seconds at most)."""
    import importlib.metadata

    env = os.environ if environ is None else environ
    try:
        engine = speech_from_env(env)
    except ValueError as error:
        return {"backend": "invalid", "ok": False, "problem": str(error), "why": "TTS_* settings are invalid"}
    if engine is None:
        try:
            version = importlib.metadata.version("espeakng-loader")
        except importlib.metadata.PackageNotFoundError:
            version = None
        entry: dict[str, Any] = {"backend": "espeak-ng", "ok": version is not None, "device": "cpu",
                                 "why": "TTS_CHATTERBOX_PYTHON and TTS_VITS_MODEL are not set: embedded espeak-ng "
                                        "speech (GPL-3)", "visemes": "espeak-ng phoneme events"}
        if version is None:
            entry["problem"] = "espeakng-loader is not installed"
        return entry
    return engine.describe(probe=probe)
