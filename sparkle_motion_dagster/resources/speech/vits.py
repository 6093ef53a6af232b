"""Neural speech with VITS: transformers ``VitsModel`` + ``VitsTokenizer`` (the MMS-TTS family).

Why VITS
    It runs in the pipeline's own environment: transformers 5 and torch from
    the ``models`` extra, nothing more to install (Chatterbox needs an
    environment of its own, see ``chatterbox.py``). MMS-TTS checkpoints
    (``facebook/mms-tts-eng``, ``facebook/mms-tts-fra`` ... one per language,
    about 36 M parameters, 16 kHz) synthesise faster than real time on one CPU
    core. VITS is non-autoregressive: it predicts a duration for every input
    character, so the audio length follows from those durations and the
    model tells us where each word sits in its own audio, which times the
    viseme stream word by word. Rejected here: SpeechT5 (English only, needs
    speaker x-vectors and a separate vocoder), Bark (autoregressive, far
    slower than real time on a CPU), Kokoro/Parler-TTS (packages outside the
    environment). MMS-TTS weights are CC-BY-NC 4.0: check the licence of the
    checkpoint you configure.

Voices
    MMS-TTS models are single-speaker, so a character is a deterministic
    noise seed plus speaking rate and noise scales (the seed picks one of the
    model's prosodies; the same seed always gives the same audio). From
    ``voice_profile`` (extra keys are allowed there):

    ======================  ==============================================================
    ``seed``                noise seed (default: a stable hash of the character id)
    ``speaking_rate``       > 0, larger is faster (default: ``rate`` / 165 wpm when ``rate``
                            is set, else the style's rate offset, times the resource's
                            ``speaking_rate``)
    ``noise_scale``         prosody/timbre variation (default: the model's, 0.667 for MMS)
    ``noise_scale_duration``  duration variation (default: the model's, 0.8 for MMS)
    ``speaker_id``          for multi-speaker VITS models (default: a stable hash of the
                            character id modulo the number of speakers)
    ======================  ==============================================================

    One model speaks one language (MMS: the ISO 639-3 code in the repo name);
    ``voice_profile.language`` only picks espeak-ng's phonemes for the visemes.

Configuration (``VitsSpeech.from_env()``; None when ``TTS_VITS_MODEL`` is unset; each field names its
variable, see ``resources/settings.py``)
    ========================  ===============================================================
    TTS_VITS_MODEL            a folder written by ``save_pretrained`` (``config.json`` with
                              ``model_type: vits`` and the tokenizer's ``vocab.json``) or a
                              Hugging Face repo id such as ``facebook/mms-tts-eng``
    TTS_VITS_DEVICE           auto (default: cuda when available), cpu, cuda, cuda:N
    TTS_VITS_MAX_CHUNK_CHARS  characters per generation (200: MMS was trained on
                              sentence-length utterances)
    TTS_VITS_SPEAKING_RATE    global speaking-rate multiplier (1.0)
    ========================  ===============================================================

    A repo id is read from the Hugging Face cache (``HF_HUB_OFFLINE=1`` keeps
    it there); without ``HF_HUB_OFFLINE`` a missing model is downloaded on
    first use (about 150 MB for MMS-TTS).

    The model is loaded once per process into a module-level cache
    (``VitsSpeech.release()`` frees it); the resource itself is plain configuration.
    Tokenizers with ``phonemize: true`` need the ``phonemizer`` package and
    MMS models for non-Latin scripts ``uroman``; neither is installed by the
    project.

Audio
    float32 inference, int16 out at the model's rate (16 kHz for MMS). The
    line's duration is the returned audio's length. Generation draws its
    noise from torch's global generator, seeded per chunk inside
    ``torch.random.fork_rng`` (the caller's random state is left untouched).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from sparkle_motion_dagster.film.dialogue import DEFAULT_WPM, STYLE_RATE_OFFSET, _stable_int
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.film.speech_fit import SpeechPace
from sparkle_motion_dagster.resources import model_support
from sparkle_motion_dagster.resources.model_support import model_digest, package_version
from sparkle_motion_dagster.resources.settings import DEVICE, DEVICE_CHOICES, NOT_BLANK, EnvConfigured, env_field
from sparkle_motion_dagster.resources.speech import NEURAL_PACE, ChunkSpeech, SpeechEngine

SILENCE_SEC = 0.1  # what a chunk with nothing speakable (e.g. "...") becomes


@dataclass(frozen=True)
class VitsVoice:
    """One character's settings; None = the model's own value."""

    seed: int
    speaking_rate: float = 1.0
    noise_scale: float | None = None
    noise_scale_duration: float | None = None
    speaker_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VitsAudio:
    samples: np.ndarray  # int16 mono
    sample_rate: int
    # (char_start, char_end, t_start, t_end) for each word of the text found in the model's input
    word_spans: list[tuple[int, int, float, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class VitsSpeech(EnvConfigured, SpeechEngine):
    """Speech from a VITS / MMS-TTS model (see the module docstring).

    Plain configuration; the model is loaded once per process on first use.
    """

    backend: ClassVar[str] = "vits"

    model: str = env_field("TTS_VITS_MODEL", pattern=NOT_BLANK, expected="must name a folder or a repo id")
    device: str = env_field("TTS_VITS_DEVICE", "auto", pattern=DEVICE, expected=DEVICE_CHOICES)
    max_chunk_chars: int = env_field("TTS_VITS_MAX_CHUNK_CHARS", 200, ge=20)
    speaking_rate: float = env_field("TTS_VITS_SPEAKING_RATE", 1.0, ge=0.1, le=10)
    noise_scale: float | None = Field(None, ge=0, le=5)
    noise_scale_duration: float | None = Field(None, ge=0, le=5)

    def runtime(self) -> dict[str, Any]:
        """Resolve the model source and device without loading weights; raise clear errors."""
        self.validate_settings()
        model_support.require_packages("VITS speech", *self.required_packages())
        return {"source": resolve_model_source(self.model), "device": resolve_device(self.device)}

    def required_packages(self) -> tuple[str, ...]:
        return ("torch", "transformers")

    def release(self) -> None:
        """Free this process's VITS model (and the CUDA cache); the next line loads it again."""
        _MODEL.release()

    def fingerprint(self) -> dict[str, Any]:
        runtime = self.runtime()
        return {
            "backend": self.backend,
            **self.model_dump(),
            "resolved": {"device": runtime["device"], "model_files": model_digest(runtime["source"]),
                         "transformers": package_version("transformers"),
                         "torch": package_version("torch")},
        }

    def describe(self, *, probe: bool = True) -> dict[str, Any]:
        """The doctor's entry: settings checked, weights located, nothing loaded."""
        entry = super().describe(probe=probe)
        entry["visemes"] = "espeak-ng phonemes anchored to VITS's per-character durations"
        if entry.get("source"):
            entry["weights"] = model_digest(entry["source"])
        return entry

    # ------------------------------------------------------------------ speech

    def pace(self, voice_profile: VoiceProfile | None = None) -> SpeechPace:
        """The neural default pace (``NEURAL_PACE``), at the voice's speaking rate."""
        profile = voice_profile or VoiceProfile()
        own = profile_number(profile, "speaking_rate", float, low=0.1, high=10)
        rate = (own if own is not None else profile_rate(profile)) * self.speaking_rate
        return replace(NEURAL_PACE, seconds_per_char=NEURAL_PACE.seconds_per_char / rate)

    def voice_for(self, character_id: str, voice_profile: VoiceProfile, *, num_speakers: int = 1) -> VitsVoice:
        return vits_voice_for(character_id, voice_profile, num_speakers=num_speakers, base_rate=self.speaking_rate,
                              noise_scale=self.noise_scale, noise_scale_duration=self.noise_scale_duration)

    def _speak(self, text: str, character_id: str, voice_profile: VoiceProfile) -> tuple[VitsAudio, dict[str, Any]]:
        runtime = self.runtime()
        loaded = load(runtime["source"], runtime["device"])
        voice = self.voice_for(character_id, voice_profile, num_speakers=loaded.num_speakers)
        audio = generate(runtime["source"], runtime["device"], text, voice)
        return audio, {"engine": "vits", "model": self.model, **voice.as_dict(), **audio.info}

    def synthesize_chunk(self, text, *, character_id, voice_profile):
        audio, info = self._speak(text, character_id, voice_profile)
        return audio.samples, audio.sample_rate, info

    def synthesize_chunk_timed(self, text, *, character_id, voice_profile):
        from sparkle_motion_dagster.film import visemes

        audio, info = self._speak(text, character_id, voice_profile)
        stream, source = visemes.aligned_stream(text, voice_profile.language, audio.samples, audio.sample_rate,
                                                word_spans=audio.word_spans)
        return ChunkSpeech(audio.samples, audio.sample_rate, info, stream, source)


# ---------------------------------------------------------------------- voices


def profile_number(profile: VoiceProfile, key: str, kind: type, *, low: float | None = None,
                   high: float | None = None) -> Any:
    """An engine hint from ``voice_profile`` (an extra key), checked; None when absent."""
    raw = (profile.model_extra or {}).get(key)
    if raw is None:
        return None
    try:
        if isinstance(raw, bool) or (kind is int and isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"voice_profile.{key} = {raw!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"voice_profile.{key} = {raw!r}: expected {low} to {high}")
    return value


def profile_rate(profile: VoiceProfile) -> float:
    """Relative speaking rate from ``rate`` (wpm) or ``style``: 1.0 at the planner's 165 wpm."""
    if profile.rate is not None:
        return profile.rate / DEFAULT_WPM
    return (DEFAULT_WPM + STYLE_RATE_OFFSET.get((profile.style or "").lower(), 0)) / DEFAULT_WPM


def character_seed(character_id: str, profile: VoiceProfile) -> int:
    seed = profile_number(profile, "seed", int, low=0, high=2**63 - 1)
    return seed if seed is not None else _stable_int("vits", character_id) % 2**31


def vits_voice_for(character_id: str, profile: VoiceProfile, *, num_speakers: int = 1, base_rate: float = 1.0,
                   noise_scale: float | None = None, noise_scale_duration: float | None = None) -> VitsVoice:
    """A stable voice per character; explicit profile values win."""
    rate = profile_number(profile, "speaking_rate", float, low=0.1, high=10)
    speaker = profile_number(profile, "speaker_id", int, low=0)
    if speaker is not None and speaker >= num_speakers:
        raise ValueError(f"voice_profile.speaker_id = {speaker}: the model has {num_speakers} speaker(s) "
                         f"(0 to {num_speakers - 1})")
    if speaker is None and num_speakers > 1:
        speaker = _stable_int("vits-speaker", character_id) % num_speakers
    profile_noise = profile_number(profile, "noise_scale", float, low=0, high=5)
    profile_noise_duration = profile_number(profile, "noise_scale_duration", float, low=0, high=5)
    return VitsVoice(
        seed=character_seed(character_id, profile),
        speaking_rate=round((rate if rate is not None else profile_rate(profile)) * base_rate, 6),
        noise_scale=profile_noise if profile_noise is not None else noise_scale,
        noise_scale_duration=profile_noise_duration if profile_noise_duration is not None else noise_scale_duration,
        speaker_id=speaker,
    )


# ---------------------------------------------------------------------- resolution


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; cuda/cuda:N checked against what torch sees."""
    return model_support.resolve_device(device, where=VitsSpeech.where("device"))


def resolve_model_source(model: str) -> str:
    """An existing folder (checked to hold a VITS model and its tokenizer) as an absolute path, else
    ``model`` unchanged as a Hugging Face repo id. Raises ValueError naming ``TTS_VITS_MODEL``."""
    where = f"{VitsSpeech.where('model')} = {model!r}"
    path = model_support.local_model_folder(model, where=where, expected="a folder written by save_pretrained",
                                            not_found=" (and it is not a repo id like facebook/mms-tts-eng)")
    if path is None:
        return model.strip()
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise ValueError(f"{where}: no config.json in {str(path)!r}: not a transformers model folder.") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{where}: cannot read {config_file}: {error}") from None
    if config.get("model_type") != "vits":
        raise ValueError(f"{where}: {str(path)!r} holds a {config.get('model_type')!r} model, not a VITS one.")
    if not (path / "vocab.json").is_file():
        raise ValueError(f"{where}: {str(path)!r} has no vocab.json: the VitsTokenizer must be saved with the model.")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ValueError(f"{where}: {str(path)!r} has no weights (*.safetensors or *.bin).")
    return str(path.resolve())


# ---------------------------------------------------------------------- the per-process model


@dataclass
class Loaded:
    key: tuple[str, str]
    model: Any
    tokenizer: Any
    sample_rate: int
    num_speakers: int
    hop: int  # audio samples per predicted frame


_MODEL: model_support.ProcessModel[Loaded] = model_support.ProcessModel()


def load(source: str, device: str) -> Loaded:
    """The model and tokenizer for ``source`` on ``device``, loaded at most once per process."""
    key = (source, device)
    return _MODEL.get(key, lambda: _load(key))


def _load(key: tuple[str, str]) -> Loaded:
    source, device = key
    from transformers import VitsModel, VitsTokenizer

    try:
        tokenizer = VitsTokenizer.from_pretrained(source)
        model = VitsModel.from_pretrained(source)
    except Exception as error:  # noqa: BLE001 - re-raised with the setting to fix
        raise RuntimeError(
            f"{VitsSpeech.where('model')} = {source!r}: could not load a VITS model and tokenizer: {error}. "
            f"{model_support.HF_CACHE_HINT}"
        ) from error
    if tokenizer.phonemize:
        from importlib.util import find_spec

        if find_spec("phonemizer") is None:
            raise RuntimeError(f"{VitsSpeech.where('model')} = {source!r}: its tokenizer phonemizes its input, which needs the "
                               "phonemizer package and a system espeak-ng (pip install phonemizer).")
    model.to(device).eval()
    config = model.config
    return Loaded(key, model, tokenizer, int(config.sampling_rate), int(config.num_speakers),
                  int(np.prod(config.upsample_rates)))


# ``loaded_key()``: ``(source, device)`` of the model held by this process, if any.
loaded_key = _MODEL.key
# ``release()``: free the process's VITS model (and the CUDA cache). Safe to call at any time.
release = _MODEL.release
__getattr__ = _MODEL.module_getattr(__name__)  # ``_LOADED``: the held ``Loaded``


def generate(source: str, device: str, text: str, voice: VitsVoice) -> VitsAudio:
    """Speak ``text`` (one chunk) with ``voice``: int16 samples, and where each word is in them."""
    import torch

    loaded = load(source, device)
    model, tokenizer = loaded.model, loaded.tokenizer
    input_ids = tokenizer(text, return_tensors="pt")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
    chars = tokens[1::2] if tokenizer.add_blank else tokens
    info = {"sample_rate": loaded.sample_rate, "input_tokens": len(tokens), "language": tokenizer.language}
    if not "".join(c for c in chars if c is not None).strip():
        return VitsAudio(np.zeros(int(SILENCE_SEC * loaded.sample_rate), dtype=np.int16), loaded.sample_rate, [],
                         {**info, "silent": True})

    captured: dict[str, Any] = {}
    hook = model.duration_predictor.register_forward_hook(
        lambda _module, _inputs, output: captured.__setitem__("log_duration", output))
    saved = (model.noise_scale, model.noise_scale_duration)
    fork_devices = [] if device == "cpu" else [torch.device(device).index or 0]
    try:
        with _MODEL.lock, torch.no_grad(), torch.random.fork_rng(devices=fork_devices):
            if voice.noise_scale is not None:
                model.noise_scale = voice.noise_scale
            if voice.noise_scale_duration is not None:
                model.noise_scale_duration = voice.noise_scale_duration
            torch.manual_seed(voice.seed)
            output = model(input_ids=input_ids.to(device), speaker_id=voice.speaker_id,
                           speaking_rate=voice.speaking_rate)
    finally:
        hook.remove()
        model.noise_scale, model.noise_scale_duration = saved
    length = int(output.sequence_lengths[0])
    waveform = output.waveform[0, :length].float().cpu().numpy()
    samples = (np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16)

    # Frames per input token, exactly as VitsModel computes them (ceil(exp(log_duration) / speaking_rate)).
    frames = torch.ceil(torch.exp(captured["log_duration"][0, 0].float()) / voice.speaking_rate).cpu().numpy()
    ends = np.cumsum(frames) * loaded.hop / loaded.sample_rate
    starts = ends - frames * loaded.hop / loaded.sample_rate
    word_spans = _word_spans(text, tokenizer, chars, starts, ends)
    info["frames"] = int(frames.sum())
    return VitsAudio(samples, loaded.sample_rate, word_spans, info)


def _word_spans(text: str, tokenizer, chars: list[str | None], starts: np.ndarray,
                ends: np.ndarray) -> list[tuple[int, int, float, float]]:
    """Where each word of ``text`` lies in the audio: its characters' predicted frames."""
    normalized = "".join(c if c is not None and len(c) == 1 else "\x00" for c in chars)
    step, first = (2, 1) if tokenizer.add_blank else (1, 0)
    spans: list[tuple[int, int, float, float]] = []
    cursor = 0
    for match in re.finditer(r"\S+", text):
        word = tokenizer.prepare_for_tokenization(match.group())[0].strip()
        if not word:
            continue
        found = normalized.find(word, cursor)
        if found < 0:
            continue  # normalisation differs for this word (e.g. a phonemizing tokenizer): no anchor
        cursor = found + len(word)
        first_token, last_token = first + step * found, first + step * (cursor - 1)
        if last_token < len(ends):
            spans.append((match.start(), match.end(), round(float(starts[first_token]), 6),
                          round(float(ends[last_token]), 6)))
    return spans


# ---------------------------------------------------------------------- tiny model for tests


TINY_VOCAB = ["_", " ", "'", "-"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")


def build_tiny_vits(directory: str | Path, *, num_speakers: int = 1, seed: int = 0) -> Path:
    """A random-initialised VITS model (about 30 k parameters, MMS layout: 16 kHz, 256 samples per
    frame, character tokenizer with blanks) and its tokenizer, saved with ``save_pretrained`` into
    ``directory``. Loads with ``from_pretrained`` like a downloaded MMS-TTS model; speaks noise."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.json"
    vocab_file.write_text(json.dumps({c: i for i, c in enumerate(TINY_VOCAB)}, ensure_ascii=False, indent=1))
    tokenizer = VitsTokenizer(vocab_file=str(vocab_file), language="eng", add_blank=True, normalize=True,
                              phonemize=False, is_uroman=False, pad_token="_", unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    config = VitsConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
        flow_size=16, spectrogram_bins=17, upsample_initial_channel=16, upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        depth_separable_num_layers=2, duration_predictor_filter_channels=16, duration_predictor_num_flows=2,
        prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1,
        num_speakers=num_speakers, speaker_embedding_size=8 if num_speakers > 1 else 0, sampling_rate=16_000,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    VitsModel(config).eval().save_pretrained(folder)
    return folder
