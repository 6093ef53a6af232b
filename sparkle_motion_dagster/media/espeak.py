"""Speech synthesis with espeak-ng, loaded from the ``espeakng-loader`` wheel.

No system package and no model weights: the wheel ships ``libespeak-ng`` and
its voice data, called here through ctypes. espeak-ng keeps global state per
process, so every call is serialised with a lock.

Determinism: the same line must render to the same samples whatever was spoken
before it (a resumed run must match an uninterrupted one). espeak-ng's pitch
"flutter" and "breath" noise vary from call to call and its gain carries over
between utterances, so we speak through our own voice variants (``sm_f1`` ...
``sm_m7``: the stock variants with flutter, breath and echo off, installed into
a private overlay of the wheel's data folder, kept in the state folder's scratch
space) and load the library afresh for each utterance.

Events: the library is initialised with phoneme events in IPA
(``espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA``), which
leaves the audio unchanged to the sample (checked). ``synthesize_events``
returns the WORD, SENTENCE, PHONEME and END events of an utterance with their
audio positions: the viseme stream of a line (see ``visemes.py``).
"""

from __future__ import annotations

import _ctypes
import atexit
import contextlib
import ctypes
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002

# espeak_EVENT_TYPE
_EVENT_LIST_TERMINATED = 0
_EVENT_KINDS = {1: "word", 2: "sentence", 5: "end", 7: "phoneme"}
_EVENT_PHONEME = 7


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h (the ``id`` union is 8 bytes: an int, a pointer or char[8])."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # characters from the start of the text, 1-based
        ("length", ctypes.c_int),  # word length in characters (WORD events)
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the utterance
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # phoneme name (UTF-8, IPA here) or a little-endian int (word number)
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakError(RuntimeError):
    pass


@dataclass(frozen=True)
class EspeakEvent:
    """One synthesis event. ``t`` is seconds from the start of the utterance's audio.

    ``kind`` is ``word``, ``sentence``, ``phoneme`` or ``end``. ``text_position``
    is the 1-based character index in the spoken text of the word the event
    belongs to (``length`` is the word's length for ``word`` events).
    ``phoneme`` is the IPA name for ``phoneme`` events ("" for a pause).
    """

    kind: str
    t: float
    text_position: int
    length: int = 0
    phoneme: str = ""


@dataclass(frozen=True)
class EspeakVoice:
    name: str  # e.g. "en-us+f3"
    rate_wpm: int
    pitch: int
    pitch_range: int = 50


FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
VARIANT_PREFIX = "sm_"
_MAX_DATA_PATH = 150  # espeak-ng keeps its data path in a fixed buffer: longer paths fail to load (checked: ~160)


def _overlay_data_dir(data_dir: Path) -> Path:
    """A folder that mirrors the wheel's data (symlinks) plus our steady variants.

    It lives in the state folder's scratch space, named with this process's pid: removed at
    exit, and by the next process that makes one (or clears the scratch) when this one is killed."""
    from sparkle_motion_dagster.store.scratch import make_scratch_dir

    overlay = make_scratch_dir("espeak", max_path_length=_MAX_DATA_PATH)
    atexit.register(shutil.rmtree, overlay, True)
    for entry in data_dir.iterdir():
        if entry.name != "voices":
            (overlay / entry.name).symlink_to(entry)
    variants_src = data_dir / "voices" / "!v"
    variants_dst = overlay / "voices" / "!v"
    variants_dst.mkdir(parents=True)
    for entry in (data_dir / "voices").iterdir():
        if entry.name != "!v":
            (overlay / "voices" / entry.name).symlink_to(entry)
    for entry in variants_src.iterdir():
        (variants_dst / entry.name).symlink_to(entry)
    for name in FEMALE_VARIANTS + MALE_VARIANTS:
        lines = [
            line for line in (variants_src / name).read_text().splitlines()
            if not line.strip().startswith(("name", "breath", "flutter", "echo"))
        ]
        lines += [f"name {VARIANT_PREFIX}{name}", "flutter 0", "breath 0"]
        (variants_dst / f"{VARIANT_PREFIX}{name}").write_text("\n".join(lines) + "\n")
    return overlay


class _Espeak:
    """espeak-ng, loaded afresh for every utterance.

    Even with steady variants, an utterance's gain depends on what the library
    spoke before (state kept in its statics, which espeak_Terminate does not
    reset). Loading the shared library, speaking, and unloading it again costs
    about 6 ms and makes every line independent of the lines before it.
    """

    RANDOM_SEED = 1

    def __init__(self) -> None:
        import espeakng_loader

        self.library_path = str(espeakng_loader.get_library_path())
        self.data_dir = _overlay_data_dir(Path(espeakng_loader.get_data_path()))
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[EspeakEvent] = []
        self._known_voices: dict[str, bool] = {}
        self._callback = _SynthCallback(self._on_audio)  # kept referenced while any library uses it
        with self._library() as lib:
            lib.espeak_Info.restype = ctypes.c_char_p
            lib.espeak_Info.argtypes = [ctypes.c_void_p]
            raw = lib.espeak_Info(None)
            self.version = raw.decode(errors="replace") if raw else "unknown"

    @contextlib.contextmanager
    def _library(self):
        lib = ctypes.CDLL(self.library_path)
        try:
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_Synth.argtypes = [
                ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                ctypes.c_void_p, ctypes.c_void_p,
            ]
            options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA
            self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_dir).encode(), options)
            if self.sample_rate <= 0:
                raise EspeakError(f"espeak_Initialize failed ({self.sample_rate}) with data at {self.data_dir}")
            lib.espeak_SetSynthCallback(self._callback)
            yield lib
            lib.espeak_Terminate()
        finally:
            handle = lib._handle
            del lib
            _ctypes.dlclose(handle)

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        index = 0
        while events and events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            kind = _EVENT_KINDS.get(event.type)
            if kind is not None:
                name = bytes(event.id).split(b"\0", 1)[0].decode("utf-8", "replace") if event.type == _EVENT_PHONEME else ""
                self._events.append(EspeakEvent(kind, event.audio_position / 1000.0, event.text_position,
                                                event.length, name))
            index += 1
        return 0

    def has_voice(self, name: str) -> bool:
        with self.lock:
            if name not in self._known_voices:
                with self._library() as lib:
                    self._known_voices[name] = lib.espeak_SetVoiceByName(name.encode()) == 0
            return self._known_voices[name]

    def synthesize(self, text: str, voice: EspeakVoice) -> np.ndarray:
        """Mono int16 samples at ``sample_rate``."""
        return self.synthesize_events(text, voice)[0]

    def synthesize_events(self, text: str, voice: EspeakVoice) -> tuple[np.ndarray, list[EspeakEvent]]:
        """Mono int16 samples at ``sample_rate`` and the utterance's events (see ``EspeakEvent``)."""
        with self.lock, self._library() as lib:
            if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise EspeakError(f"espeak-ng has no voice {voice.name!r}")
            lib.espeak_SetParameter(_PARAM_RATE, voice.rate_wpm, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
            lib.espeak_SetParameter(_PARAM_RANGE, voice.pitch_range, 0)
            lib.espeak_ng_SetRandSeed(self.RANDOM_SEED)
            self._chunks, self._events = [], []
            encoded = text.encode("utf-8") + b"\0"
            status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != 0:
                raise EspeakError(f"espeak_Synth failed with status {status}")
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
            events, self._events = self._events, []
        return (np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)), events


_instance: _Espeak | None = None
_instance_lock = threading.Lock()


def engine() -> _Espeak:
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = _Espeak()
        return _instance
