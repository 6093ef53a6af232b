"""What the real-model adapters (SDXL, Wan, VITS, Wav2Lip, Chatterbox, the LLM planner) share.

One implementation each of: the optional-dependency check, package versions,
the device setting (``auto``/``cpu``/``cuda``/``cuda:N``), a model folder or
Hugging Face repo id and its weights' identity, and the per-process model cache.
Reading settings from the environment is ``settings.py``'s.

Nothing here imports torch, diffusers or transformers at import time: torch is
imported only when a device is resolved or a loaded model is freed, and
``huggingface_hub`` only when a repo id's weights are identified.

Error messages take ``where``, the text naming the setting to fix, e.g.
``"IMAGES_SDXL_DEVICE (SdxlKeyframes.device)"``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MODELS_EXTRA = ("install the models extra (pip install torch==2.13.0 first, then "
                "pip install 'sparkle-motion-dagster[models]')")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_CHOICES = "expected auto, cuda, cuda:N or cpu"
# A Hugging Face repo id (``owner/name``); anything else that is not an existing path is an error.
REPO_ID_PATTERN = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
HF_CACHE_HINT = "A repo id must be in the Hugging Face cache (or downloadable, when HF_HUB_OFFLINE is unset)."


# ---------------------------------------------------------------------- packages


def require_packages(backend_label: str, *names: str) -> None:
    """Fail early, with the fix, when optional model dependencies are not installed.

    ``backend_label`` names the backend in the message: "the {backend_label} backend needs ...".
    """
    from importlib.util import find_spec

    missing = [name for name in names if find_spec(name) is None]
    if missing:
        raise RuntimeError(f"the {backend_label} backend needs {', '.join(missing)}: {MODELS_EXTRA}.")


def package_version(name: str) -> str:
    """The installed version of the distribution ``name``, or ``"missing"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


# ---------------------------------------------------------------------- devices


def cuda_unavailable(where: str, value: str) -> RuntimeError:
    """The error for a CUDA setting (``value`` of ``where``) in a process where torch sees no CUDA."""
    import torch

    build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return RuntimeError(f"{where} = {value!r} but CUDA is not available in this process "
                        f"(torch {torch.__version__}, {build}). Use cpu or auto, or fix the GPU setup.")


def resolve_device(device: str, *, where: str) -> str:
    """``auto`` -> cuda when available, else cpu; cuda/cuda:N checked against what torch sees.

    Errors name ``where``, the setting to fix (e.g. ``"TTS_VITS_DEVICE (VitsSpeech.device)"``).
    """
    import torch

    value = device.strip().lower()
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return "cpu"
    if DEVICE_PATTERN.fullmatch(value):
        if not torch.cuda.is_available():
            raise cuda_unavailable(where, device)
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"{where} = {device!r} but only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible.")
        return value
    raise ValueError(f"{where} = {device!r}: {DEVICE_CHOICES}")


def free_cuda_memory() -> None:
    """Collect garbage and return torch's cached CUDA memory (when CUDA is available)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------- model sources


def local_model_folder(model: str, *, where: str, expected: str, not_found: str = "") -> Path | None:
    """The existing folder ``model`` names, or None when it is no path but looks like a repo id.

    Raises ValueError starting with ``where`` when ``model`` is empty, names neither an existing path
    nor a repo id (``not_found`` is added to that message), or names a file (``expected`` says what
    was expected instead).
    """
    value = model.strip()
    if not value:
        raise ValueError(f"{where}: empty")
    path = Path(value).expanduser()
    if not path.exists():
        if REPO_ID_PATTERN.fullmatch(value):
            return None
        raise ValueError(f"{where}: the folder {str(path)!r} does not exist{not_found}.")
    if not path.is_dir():
        raise ValueError(f"{where}: {str(path)!r} is a file; expected {expected}.")
    return path


def diffusers_index(path: Path, *, where: str, example: str) -> dict[str, Any]:
    """A diffusers pipeline folder's ``model_index.json``; ValueError naming ``where`` when there is none
    (``example`` is a repo id whose download would be such a folder)."""
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"{where}: {str(path)!r} is not a diffusers pipeline folder (no model_index.json). Use a "
                         f"folder written by save_pretrained, e.g. a download of {example}.")
    try:
        return json.loads(index_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{where}: cannot read {index_file}: {error}") from None


def missing_components(index: dict[str, Any], required: Sequence[str]) -> list[str]:
    """The ``required`` components a ``model_index.json`` does not declare."""
    return [name for name in required if not (isinstance(index.get(name), list) and index[name][0])]


def check_component_folders(path: Path, required: Sequence[str], *, where: str) -> None:
    """Every ``required`` component has its folder in the pipeline folder ``path``."""
    for name in required:
        if not (path / name).is_dir():
            raise ValueError(f"{where}: the component folder {name!r} is missing from {str(path)!r}.")


def model_digest(source: str) -> str:
    """A short identity for the weights: file names, sizes and config contents of a local folder,
    or the cached snapshot's commit for a repo id (the id alone when it is not cached)."""
    path = Path(source)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts):
            digest.update(f"{file.relative_to(path).as_posix()}\x00{file.stat().st_size}\x00".encode())
            if file.suffix in (".json", ".txt") and file.stat().st_size < 1_000_000:
                digest.update(file.read_bytes())
        return "folder:" + digest.hexdigest()[:16]
    try:
        from huggingface_hub import snapshot_download

        return "snapshot:" + Path(snapshot_download(source, local_files_only=True)).name
    except Exception:  # noqa: BLE001 - not cached: loading will report it properly
        return "repo:" + source


# ---------------------------------------------------------------------- are the weights here?

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".msgpack")


def hub_cache_dir() -> str | None:
    """The Hugging Face hub cache this process uses (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else the default)."""
    import os

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _weights_in_folder(folder: Path) -> tuple[bool, str]:
    """Whether a model folder holds its weights: every component of a diffusers folder that has a
    config has a weight file (and every shard its index lists); any other folder, one weight file."""
    def has_weights(path: Path) -> tuple[bool, str]:
        for index in path.glob("*.index.json"):
            try:
                shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
            except (OSError, ValueError):
                return False, f"{index} cannot be read"
            missing = sorted(s for s in shards if not (path / s).is_file())
            if missing:
                return False, f"{path.name}: {len(missing)} weight shard(s) missing, e.g. {missing[0]}"
        if any(f.is_file() and f.suffix in WEIGHT_SUFFIXES for f in path.iterdir()):
            return True, ""
        return False, f"no weight file ({', '.join(WEIGHT_SUFFIXES)}) in {path}"

    index = folder / "model_index.json"
    if index.is_file():
        try:
            declared = json.loads(index.read_text())
        except (OSError, ValueError):
            return False, f"{index} cannot be read"
        for name, entry in declared.items():
            component = folder / name
            if isinstance(entry, list) and entry[0] and (component / "config.json").is_file():
                found, why = has_weights(component)
                if not found:
                    return False, why
        return True, ""
    if any(next(folder.rglob(f"*{suffix}"), None) is not None for suffix in WEIGHT_SUFFIXES):
        return True, ""
    return False, f"no weight file ({', '.join(WEIGHT_SUFFIXES)}) in {folder}"


def weights_status(source: str) -> dict[str, Any]:
    """Whether a model's weights are on this machine, without loading them: a file exists; a folder
    holds its weight files; a repo id is in the local Hugging Face cache with its weight files
    (``huggingface_hub.try_to_load_from_cache``). ``{"weights_found": bool, "weights": where or why not}``."""
    path = Path(str(source)).expanduser()
    if path.is_file():
        return {"weights_found": True, "weights": str(path)}
    if path.is_dir():
        found, why = _weights_in_folder(path)
        return {"weights_found": found, "weights": str(path) if found else why}
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    for marker in ("model_index.json", "config.json", "model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(str(source), marker, cache_dir=cache)
        if isinstance(cached, str):
            snapshot = Path(cached).parent
            found, why = _weights_in_folder(snapshot)
            return {"weights_found": found,
                    "weights": f"Hugging Face cache: {snapshot}" if found else f"{source} is cached but {why}"}
    return {"weights_found": False,
            "weights": f"{source} is not in the Hugging Face cache ({cache or 'the default cache'}): download it "
                       f"first (huggingface-cli download {source})"}


# ---------------------------------------------------------------------- the per-process model


class ProcessModel(Generic[T]):
    """One loaded model per process, kept for the next calls with the same key.

    Asking for another key frees the held model first (only one is held at a
    time); ``release()`` frees it and torch's CUDA cache. ``lock`` (reentrant)
    also serialises the adapter's use of the model. ``owner`` is the adapter's
    module (by default the module that made it): :func:`release_models_except`
    frees every other adapter's model when a stage needs the GPU.
    """

    def __init__(self, owner: str | None = None) -> None:
        import sys

        self.lock = threading.RLock()
        self._key: Hashable | None = None
        self._value: T | None = None
        self.owner = owner or sys._getframe(1).f_globals.get("__name__", "")
        _ALL_MODELS.append(self)

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model for ``key``: the held one, or ``load()`` after freeing any other."""
        with self.lock:
            if self._value is not None and self._key == key:
                return self._value
            self.release()
            value = load()
            self._key, self._value = key, value
            return value

    @property
    def value(self) -> T | None:
        """The held model, if any."""
        return self._value

    def key(self) -> Any:
        """The key of the held model, or None."""
        return None if self._value is None else self._key

    def module_getattr(self, module: str, name: str = "_LOADED") -> Callable[[str], Any]:
        """A module-level ``__getattr__`` that shows the held model as ``<module>.<name>`` (for inspection)."""

        def __getattr__(attribute: str) -> Any:
            if attribute == name:
                return self._value
            raise AttributeError(f"module {module!r} has no attribute {attribute!r}")

        return __getattr__

    def release(self) -> None:
        """Free the held model (and the CUDA cache). Safe to call at any time."""
        with self.lock:
            if self._value is None:
                return
            self._key = self._value = None
            free_cuda_memory()


# Every adapter's per-process model, so that a stage can free the ones it does not use.
_ALL_MODELS: list[ProcessModel] = []
# Other things an adapter holds on the GPU (a speech worker process): owner -> a function that frees
# them and says whether it freed anything.
_RELEASERS: list[tuple[str, Callable[[], bool]]] = []


def register_release(owner: str, release: Callable[[], bool]) -> None:
    """Let :func:`release_models_except` free what the adapter module ``owner`` holds beside a ProcessModel."""
    _RELEASERS.append((owner, release))


def release_models_except(*owners: str) -> list[str]:
    """Free every model this process holds except those of ``owners`` (adapter modules); returns the
    owners freed. A GPU stage calls it before it loads its own model: a worker that alternates the
    stages of several films then holds one model at a time, not one per stage."""
    freed = []
    for model in _ALL_MODELS:
        if model.owner not in owners and model.value is not None:
            model.release()
            freed.append(model.owner)
    for owner, release in _RELEASERS:
        if owner not in owners and release():
            freed.append(owner)
    return freed
