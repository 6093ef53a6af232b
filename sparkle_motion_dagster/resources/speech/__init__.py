"""Speech: one WAV per dialogue line, and its viseme stream.

The interface is here; each engine (a ``SpeechEngine`` resource, chosen from the
environment by ``resources/selection.py``) has its own module:

* ``EspeakSpeech`` (``espeak.py``): espeak-ng through ctypes, in process, no
  weights. The default, when neither variable below is set.
* ``PiperSpeech`` (``piper.py``): Piper voices through onnxruntime, in
  process, on any CPU (the ``voices`` extra ships ``en_US-joe-medium``).
  Selected by ``TTS_PIPER_VOICE``; wins over VITS.
* ``VitsSpeech`` (``vits.py``): transformers ``VitsModel`` (MMS-TTS), in
  process. Selected by ``TTS_VITS_MODEL``.
* ``ChatterboxSpeech`` (``chatterbox.py``): Chatterbox in a long-lived worker
  (``worker/speech_worker.py``) under another environment's Python. Selected
  by ``TTS_CHATTERBOX_PYTHON``; wins over the others.

Every engine returns a :class:`SpeechResult` whose ``visemes`` is the line's
viseme stream (see ``visemes.py``): from the synthesis events for espeak-ng,
from espeak-ng phonemes timed to the neural audio otherwise.

Before rendering (the dry run, the planners), an engine tells how long a line
will be: ``measure_seconds`` speaks it where that is cheap (espeak-ng: a few
milliseconds a line), and ``pace`` estimates it otherwise (see
:data:`NEURAL_PACE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import dagster as dg
import numpy as np
from pydantic import Field

from sparkle_motion_dagster.film.dialogue import chunk_text
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.film.speech_fit import FitPolicy, SpeechPace, SpeechTiming

# The pace assumed for neural engines (VITS, Chatterbox), whose speed depends on the voice and the
# model: read English runs at 13 to 15 characters a second, a little slower with expressive
# voices, plus a breath at each comma or sentence end and the model's lead-in. An estimate only:
# the stitcher fits what the engine really says.
NEURAL_PACE = SpeechPace(seconds_per_char=0.07, pause_s=0.3, lead_s=0.3)


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
    default times espeak-ng's phonemes to the returned audio. ``backend`` names
    the engine in manifests.
    """

    backend: ClassVar[str] = ""
    max_chunk_chars: int = Field(300, ge=1)
    chunk_pause_sec: float = Field(0.08, ge=0)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the audio for the same text and voice."""
        return {"backend": self.backend, **self.model_dump()}

    def pace(self, voice_profile: VoiceProfile | None = None) -> SpeechPace:
        """How fast this engine speaks in a voice, to estimate a line before it is spoken."""
        return NEURAL_PACE

    def measure_seconds(self, text: str, *, character_id: str, voice_profile: VoiceProfile) -> float | None:
        """A line's exact length when speaking it is cheap (None: estimate it from :meth:`pace`)."""
        return None

    def timing(self, policy: FitPolicy) -> SpeechTiming:
        """What a planner needs to time lines for this engine."""
        return SpeechTiming(self.backend, self.pace, policy)

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

    def provenance(self) -> dict[str, Any]:
        """What made a file, for its provenance record: backend and settings; for a real model also
        its id, local path, weights digest, dtype and device (resolved without loading weights)."""
        from sparkle_motion_dagster.insight.provenance import model_provenance

        return model_provenance(self)

    def release(self) -> None:
        """Free what the engine holds in this process (a model, a worker); speaking again restarts it."""
