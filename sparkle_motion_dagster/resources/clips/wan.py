"""Shot clips from Wan image-to-video models (diffusers ``WanImageToVideoPipeline``).

Serves the ``render_profile.video.model_id`` values of ``wan_families.py``
(``wan-2.1``, ``wan-2.1-i2v-480p``, ``wan-2.1-flf2v-720p``, ``wan-2.2-i2v-a14b``,
``wan-2.2-ti2v-5b``): the folder's configs must hold the declared family, and
the family it ran is recorded. The run's speed levers (LoRAs, attention
backend, regional compile, step cache, shift; ``resources/model_levers.py``)
come from the environment and ``render_profile.video`` (:meth:`WanClips.with_settings`).

Continuity
    A shot runs from its start keyframe to its end keyframe. When the model's
    transformer was trained for first-last-frame conditioning (Wan 2.1 FLF2V:
    its config sets ``pos_embed_seq_len``, room for both frames' CLIP tokens)
    each generation is given ``last_image=`` and the clip lands on the end
    keyframe: ``continuity_mode = "first_last_frame"``. A plain I2V model only
    starts from the start keyframe and moves freely from there, so the cut to
    the next shot (which starts on this shot's end keyframe) can jump:
    ``continuity_mode = "image_to_video"`` (weaker). The capability is read from
    the config, never found out by a tensor size error: an FLF2V transformer
    cannot run without ``last_image`` and an I2V one cannot run with it.
    Identical start and end keyframes make an FLF2V clip almost static
    (upstream report); the result flags them as ``identical_endpoints``.

Time: generation fps vs output fps
    The plan's fps wins. The model generates at about ``gen_fps`` (Wan 2.1 is
    trained at 16 fps) over the shot's span, the time from its first to its
    last output frame, ``(frames - 1) / fps`` seconds. Wan needs 4k+1 frames
    per generation, so the span is covered by ``4 x units`` frame intervals
    (rounded up, so the effective generation fps, reported as
    ``generation_fps``, is ``gen_fps`` or slightly above). The output's frame
    ``i`` sits at ``i / (frames - 1)`` of the span (the first frame on the start
    keyframe and, with FLF2V, the last on the end keyframe, as in the animatic);
    frames between two generated ones are made by ``retime`` (``media/retime.py``:
    motion-compensated by default, or a blend). The MP4 therefore has exactly
    ``request.frames`` frames at ``request.fps``.

Space
    Generation happens at the output's aspect ratio in multiples of 16 (8x VAE
    x 2x2 patches), scaled down to at most ``max_pixels`` (0 = auto: 1280x720
    for FLF2V models, which are 720p only, 832x480 otherwise) and never up;
    keyframes are cover-fitted to that size, and frames are resized to exactly
    ``request.width`` x ``request.height`` on output.

Long shots: chained segments
    One generation holds at most ``max_frames_per_generation`` frames (81: more
    drifts in colour). A longer shot is split into balanced segments; each
    starts from the previous segment's last generated frame, and the seam frame
    is kept once. With an I2V model the segments simply continue. With an
    FLF2V model the last segment ends on the shot's end keyframe and the ones
    before run with an open end (the start frame's CLIP tokens stand in for the
    missing last frame: :func:`_open_end`). Only when ``waypoints`` is on does a
    *guide* generation first span the whole shot from the start to the end
    keyframe at a coarser time step, its frames at the segment boundaries
    becoming the intermediate targets (one more generation per long shot).
    Segment ``i`` is seeded ``seed + i``, the guide ``seed + GUIDE_SEED_OFFSET``.

Loading
    ``WanClips`` is plain configuration; the pipeline is loaded once per process
    into a module-level cache on first use and freed by ``WanClips.release()``. Only one
    Wan pipeline is held at a time. ``WanClips.from_env()`` reads (each field
    names its variable, see ``resources/settings.py``):

    ==========================  ======================================================
    VIDEOS_WAN_MODEL            local diffusers folder or Hugging Face repo id, e.g.
                                Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers (first-last-
                                frame) or Wan-AI/Wan2.1-I2V-14B-480P-Diffusers; unset = None
    VIDEOS_WAN_DEVICE_PRESET    auto (default), cuda-bf16, cuda-fp16, cuda-offload,
                                cuda-group-offload, cpu
    VIDEOS_WAN_STEPS            denoising steps (30)
    VIDEOS_WAN_GUIDANCE         classifier-free guidance scale (5.0)
    VIDEOS_WAN_GEN_FPS          generation frame rate (16)
    VIDEOS_WAN_MAX_FRAMES       max_frames_per_generation (81; 4k+1)
    VIDEOS_WAN_MAX_PIXELS       generation area cap (0 = auto, see above)
    VIDEOS_WAN_NEGATIVE_PROMPT  negative prompt ("")
    VIDEOS_WAN_SHIFT            the flow-matching shift ("" = the model's scheduler's)
    VIDEOS_WAN_LORAS            LoRA files: JSON ``[{"path", "scale"}]`` or one path
    VIDEOS_WAN_ATTENTION        attention backend ("" = diffusers' default)
    VIDEOS_WAN_COMPILE          off (default) or regional
    VIDEOS_WAN_CACHE            "" or ``first_block:0.05`` / ``taylorseer:5``
    VIDEOS_WAN_FAST_LORA        the step-distilled LoRA of ``preset: fast``
    VIDEOS_WAN_RETIME           motion (default) or blend
    VIDEOS_WAN_WAYPOINTS        1 = guide long first-last-frame shots (one more generation)
    ==========================  ======================================================

    Device presets: ``cuda-bf16``/``cuda-fp16`` load the transformer and text
    encoder in that dtype and keep the VAE and CLIP image encoder in float32
    (as upstream recommends), everything resident on the GPU; ``cuda-offload``
    is ``cuda-bf16`` with model CPU offload (each sub-model on the GPU only
    while it runs); ``cuda-group-offload`` streams the transformer's blocks in
    one at a time; ``cpu`` is float32. ``auto`` (on CUDA) lets the memory plan
    (``resources/memory_plan.py``) choose the fastest placement whose predicted
    peak fits the card's free memory for the shot's largest generation, with
    VAE tiling where the decode would not fit; an explicit preset that cannot
    fit fails before loading, saying what ``auto`` would choose. The 14B
    models hold about 48 GB of weights resident in bf16 (transformer 33 GB,
    UMT5 11 GB). Out of GPU memory, a generation is retried once at the next
    lower-memory placement; a second one fails for good, with the numbers.

    The keyframe stage's SDXL pipeline is cached separately
    (``SdxlKeyframes.release()`` frees it before the clips stage if GPU
    memory is tight).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np
from PIL import Image, ImageOps
from pydantic import field_validator

from sparkle_motion_dagster.film.levers import LEVERS
from sparkle_motion_dagster.media.ffmpeg import FrameEncoder
from sparkle_motion_dagster.media.images import open_image
from sparkle_motion_dagster.media.retime import RETIMERS, retime
from sparkle_motion_dagster.media.retime import blend_frames as resample_frames  # noqa: F401 - the blend, by its old name
from sparkle_motion_dagster.resources import memory_plan, model_levers, model_support
from sparkle_motion_dagster.resources.clips import ClipRenderer, ClipRequest, wan_families
from sparkle_motion_dagster.resources.model_levers import LoraSetting
from sparkle_motion_dagster.resources.model_support import model_digest, package_version
from sparkle_motion_dagster.resources.settings import NOT_BLANK, EnvConfigured, env_field

Preset = Literal["auto", "cuda-bf16", "cuda-fp16", "cuda-offload", "cuda-group-offload", "cpu"]
PRESETS = get_args(Preset)
FIRST_LAST_FRAME = "first_last_frame"
IMAGE_TO_VIDEO = "image_to_video"
GUIDE_SEED_OFFSET = 10_000
AREA_480P = 832 * 480
AREA_720P = 1280 * 720
# Components a Wan image-to-video folder must declare in model_index.json.
REQUIRED_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
# The named presets (README "Speed levers"): the model's published defaults, and a 4-step distilled LoRA
# at CFG 1 (lightx2v, diffusers PR #12040); the fast preset's LoRA file is VIDEOS_WAN_FAST_LORA.
QUALITY: dict[str, Any] = {"steps": 40, "guidance": 5.0}
FAST: dict[str, Any] = {"steps": 4, "guidance": 1.0}


class WanClips(EnvConfigured, ClipRenderer):
    """Shot clips from a Wan image-to-video model (first-last-frame when the model supports it).

    Plain configuration; see the module docstring for continuity, timing,
    chained segments and loading.
    """

    backend: ClassVar[str] = "wan-2.1"
    model_ids: ClassVar[tuple[str, ...]] = wan_families.MODEL_IDS
    levers: ClassVar[tuple[str, ...]] = tuple(name for name in LEVERS if name != "scheduler")

    model: str = env_field("VIDEOS_WAN_MODEL", pattern=NOT_BLANK, expected="must name a folder or a repo id")
    device_preset: Preset = env_field("VIDEOS_WAN_DEVICE_PRESET", "auto")
    steps: int = env_field("VIDEOS_WAN_STEPS", 30, ge=1)
    guidance: float = env_field("VIDEOS_WAN_GUIDANCE", 5.0, ge=0)
    gen_fps: int = env_field("VIDEOS_WAN_GEN_FPS", 16, ge=1)
    max_frames_per_generation: int = env_field("VIDEOS_WAN_MAX_FRAMES", 81, ge=5)
    max_pixels: int = env_field("VIDEOS_WAN_MAX_PIXELS", 0, ge=0)
    negative_prompt: str = env_field("VIDEOS_WAN_NEGATIVE_PROMPT", "", verbatim=True)
    # The speed levers (README "Speed levers"); a run's render_profile.video sets them too (with_settings).
    shift: float | None = env_field("VIDEOS_WAN_SHIFT", None, gt=0)
    loras: list[LoraSetting] = env_field("VIDEOS_WAN_LORAS", [])
    attention_backend: str = env_field("VIDEOS_WAN_ATTENTION", "")
    compile: Literal["off", "regional"] = env_field("VIDEOS_WAN_COMPILE", "off")
    cache: str = env_field("VIDEOS_WAN_CACHE", "")
    fast_lora: str = env_field("VIDEOS_WAN_FAST_LORA", "")
    retime: str = env_field("VIDEOS_WAN_RETIME", "motion", pattern="^(" + "|".join(RETIMERS) + ")$",
                            expected=f"expected one of {', '.join(RETIMERS)}")
    waypoints: bool = env_field("VIDEOS_WAN_WAYPOINTS", False)
    model_id: str = ""  # the family render_profile.video.model_id declares ("": whatever the folder holds)

    _loras_from_text = field_validator("loras", mode="before")(model_levers.parse_loras)
    _cache_checked = field_validator("cache", mode="before")(model_levers.check_cache)
    _attention_checked = field_validator("attention_backend")(model_levers.check_attention)

    @field_validator("max_frames_per_generation")
    @classmethod
    def _frames_are_4k_plus_1(cls, value: int) -> int:
        if (value - 1) % 4:
            raise ValueError("must be 4k+1 (e.g. 81): Wan generates 4 frames per latent frame, plus the first")
        return value

    @field_validator("max_pixels")
    @classmethod
    def _area_is_auto_or_a_frame(cls, value: int) -> int:
        if 0 < value < 16 * 16:
            raise ValueError("0 (auto) or at least 256")
        return value

    @property
    def max_seconds_per_generation(self) -> float:
        """Seconds of a shot one generation covers (5 s by default); longer shots are chained segments."""
        return (self.max_frames_per_generation - 1) / self.gen_fps

    def with_settings(self, profile: Mapping[str, Any]) -> "WanClips":
        """This model with a run's ``render_profile.video``: its model id, preset and levers."""
        if profile.get("preset") == "fast" and not self.fast_lora:
            raise ValueError(f"render_profile.video.preset = 'fast' needs a step-distilled LoRA file (e.g. "
                             f"lightx2v's Wan 2.1 I2V 4-step LoRA): set {self.variable('fast_lora')}.")
        presets = {"quality": QUALITY, "fast": {**FAST, "loras": [{"path": self.fast_lora, "scale": 1.0}]}}
        return model_levers.with_profile(self, profile, section="video", presets=presets,
                                         run_fields=("model_id", *self.levers, "retime", "waypoints"))

    def generations(self, frames: int, fps: float) -> dict[str, int]:
        """Generations and generated frames of one shot (the segments, and the guide when waypoints are on)."""
        lengths = segment_lengths(frames, fps, self.gen_fps, self.max_frames_per_generation)
        guide = self.max_frames_per_generation if self.waypoints and len(lengths) > 1 else 0
        return {"generations": len(lengths) + (1 if guide else 0), "model_frames": sum(lengths) + guide}

    def levers_record(self) -> dict[str, Any]:
        """Steps, guidance and the levers a clip is made with (LoRAs by sha256)."""
        runtime = self.runtime()
        return {"family": runtime["family"], "steps": self.steps, "guidance": self.guidance,
                **runtime["levers"].record(), "retime": self.retime, "waypoints": self.waypoints}

    def release(self) -> None:
        """Free this process's Wan pipeline (and the CUDA cache); the next render loads it again."""
        _MODEL.release()

    def required_packages(self) -> tuple[str, ...]:
        # Wan cannot load without accelerate and cannot encode a prompt without ftfy.
        return ("torch", "diffusers", "transformers", "accelerate", "ftfy")

    def runtime(self) -> dict[str, Any]:
        """Resolve the model, device preset and continuity mode from configs only (no weights loaded).

        Imports torch and diffusers; raises clear errors naming the variable to fix.
        """
        self.validate_settings()
        model_support.require_packages("Wan clip", *self.required_packages())
        source = resolve_model_source(self.model)
        preset = resolve_preset(self.device_preset)
        transformer = _transformer_config(source)
        family = wan_families.check(self.model_id, _pipeline_index(source), transformer, folder=source,
                                    where=self.where("model"))
        mode = continuity_mode(transformer)
        levers = model_levers.resolve(self, device="cpu" if preset == "cpu" else "cuda",
                                      where=lambda name: f"render_profile.video.{name} / {self.where(name)}",
                                      denoisers=("transformer", "transformer_2"),
                                      two_transformers=family.two_transformers)
        return {"source": source, "preset": preset, "continuity_mode": mode, "family": family.model_id,
                "levers": levers, "loras": levers.record()["loras"],
                "max_pixels": self.max_pixels or (AREA_720P if mode == FIRST_LAST_FRAME else AREA_480P)}

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the clip for the same request."""
        runtime = self.runtime()
        return {
            "backend": self.backend,
            **self.model_dump(),
            "resolved": {"preset": runtime["preset"], "continuity_mode": runtime["continuity_mode"],
                         "max_pixels": runtime["max_pixels"], "model_files": model_digest(runtime["source"]),
                         "diffusers": package_version("diffusers"), "family": runtime["family"],
                         "levers": runtime["levers"].record()},
        }

    # ------------------------------------------------------------------ rendering

    def render(self, request: ClipRequest, out_path: Path) -> dict[str, Any]:
        """Write ``request.frames`` frames at ``request.fps``, ``request.width`` x ``request.height``, to ``out_path``."""
        if request.frames < 1:
            raise ValueError(f"{request.shot_id}: a clip needs at least one frame, got {request.frames}")
        runtime = self.runtime()
        with _MODEL.lock:
            plan = self.memory_plan(runtime, request)
            levers = runtime["levers"]
            pipe = _pipeline(runtime["source"], runtime["preset"], plan, levers.load_key())
            model_levers.prepare(pipe, levers)
            mode = continuity_mode(pipe.transformer.config)
            spatial = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
            temporal = pipe.vae_scale_factor_temporal
            gen_w, gen_h = generation_size(request.width, request.height, runtime["max_pixels"], multiple=spatial)
            lengths = segment_lengths(request.frames, request.fps, self.gen_fps, self.max_frames_per_generation,
                                      temporal=temporal)
            start = _load_fitted(request.start_image, gen_w, gen_h)
            end = _load_fitted(request.end_image, gen_w, gen_h)
            prompt = _compose_prompt(request)

            def generate(first: Image.Image, last: Image.Image | None, frames: int, seed: int) -> np.ndarray:
                nonlocal plan

                def attempt(placed: memory_plan.MemoryPlan | None) -> np.ndarray:
                    placed_pipe = _pipeline(runtime["source"], runtime["preset"], placed, levers.load_key())
                    model_levers.prepare(placed_pipe, levers)
                    with _open_end(placed_pipe, mode == FIRST_LAST_FRAME and last is None):
                        return _generate(placed_pipe, first, last if mode == FIRST_LAST_FRAME else None,
                                         prompt=prompt, negative_prompt=self.negative_prompt, width=gen_w,
                                         height=gen_h, frames=frames, steps=self.steps, guidance=self.guidance,
                                         seed=seed)

                if plan is None:
                    return attempt(None)
                frames_out, plan = memory_plan.render_stepping_down(plan, attempt, release=_MODEL.release,
                                                                    setting=self.where("device_preset"))
                return frames_out

            targets: list[Image.Image | None] = [None] * (len(lengths) - 1) + [end]
            guide_frames = 0
            if mode == FIRST_LAST_FRAME and len(lengths) > 1 and self.waypoints:
                guide_frames = self.max_frames_per_generation
                guide = generate(start, end, guide_frames, request.seed + GUIDE_SEED_OFFSET)
                targets = [Image.fromarray(frame) for frame in waypoints(guide, lengths)] + [end]

            generated: list[np.ndarray] = []
            first = start
            for index, (frames, target) in enumerate(zip(lengths, targets)):
                segment = generate(first, target, frames, request.seed + index)
                generated.extend(segment if index == 0 else segment[1:])
                first = Image.fromarray(segment[-1])
        video = np.stack(generated)

        with FrameEncoder(out_path, width=request.width, height=request.height, fps=request.fps) as encoder:
            for frame in retime(video, request.frames, self.retime):
                if frame.shape[1] != request.width or frame.shape[0] != request.height:
                    frame = np.asarray(Image.fromarray(frame).resize((request.width, request.height),
                                                                     Image.Resampling.LANCZOS))
                encoder.write(np.ascontiguousarray(frame).tobytes())

        span = (request.frames - 1) / request.fps
        return {
            "frames": encoder.frames_written,
            "continuity_mode": mode,
            "segments": len(lengths),
            "segment_frames": lengths,
            "guide_frames": guide_frames,
            "generations": len(lengths) + (1 if guide_frames else 0),
            "generated_frames": int(video.shape[0]),
            "model_frames": sum(lengths) + guide_frames,  # every frame the model made: seams twice, the guide too
            "retime": self.retime,
            "family": runtime["family"],
            "levers": {"steps": self.steps, "guidance": self.guidance, **levers.record()},
            "generation_fps": round((video.shape[0] - 1) / span, 4) if span > 0 else float(self.gen_fps),
            "generation_size": [gen_w, gen_h],
            "identical_endpoints": bool(np.array_equal(np.asarray(start), np.asarray(end))),
            "memory_plan": memory_plan.plan_metadata(plan),
        }

    def memory_plan(self, runtime: Mapping[str, Any], request: ClipRequest, *,
                    card: memory_plan.Card | None = None, check: bool = True) -> memory_plan.MemoryPlan | None:
        """Where the model's parts go for ``request``'s largest generation on ``card`` (this process's GPU by
        default; None on the CPU). An explicit preset that cannot fit fails here, before loading."""
        if runtime["preset"] == "cpu" and card is None:
            return None
        gen_w, gen_h = generation_size(request.width, request.height, runtime["max_pixels"], multiple=16)
        lengths = segment_lengths(request.frames, request.fps, self.gen_fps, self.max_frames_per_generation)
        guided = runtime["continuity_mode"] == FIRST_LAST_FRAME and len(lengths) > 1
        frames = self.max_frames_per_generation if guided else max(lengths)
        if card is None:
            card = memory_plan.current_card(held_bytes=memory_plan.held_by_torch() if _MODEL.value else 0)
        plan = memory_plan.wan_plan(runtime["source"], width=gen_w, height=gen_h, frames=frames, card=card,
                                    preset=self.device_preset,
                                    chosen_by="auto" if self.device_preset == "auto" else self.where("device_preset"))
        if check:
            memory_plan.check_explicit(plan, setting=self.where("device_preset"), value=self.device_preset)
        return plan


# ---------------------------------------------------------------------- planning (pure functions)


def continuity_mode(transformer_config: Mapping[str, Any]) -> str:
    """``first_last_frame`` when the transformer takes two frames' image tokens, else ``image_to_video``."""
    return FIRST_LAST_FRAME if transformer_config.get("pos_embed_seq_len") else IMAGE_TO_VIDEO


def generation_size(width: int, height: int, max_pixels: int, *, multiple: int = 16) -> tuple[int, int]:
    """The output's aspect ratio scaled down (never up) to at most ``max_pixels``, each side rounded down
    to a multiple of ``multiple`` (as upstream's examples do), and at least one ``multiple``."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    return (max(multiple, int(width * scale) // multiple * multiple),
            max(multiple, int(height * scale) // multiple * multiple))


def segment_lengths(frames: int, fps: float, gen_fps: float, max_frames: int, *, temporal: int = 4) -> list[int]:
    """Frame counts (each ``temporal``·k+1, at most ``max_frames``) of the chained generations for a shot
    of ``frames`` output frames at ``fps``, generated at about ``gen_fps``.

    Consecutive segments share their seam frame, so together they give
    ``1 + sum(n - 1)`` frames: at least ``gen_fps`` over the shot's span.
    """
    span = max(frames - 1, 0) / fps
    units = max(1, math.ceil(span * gen_fps / temporal - 1e-9))
    per_segment = (max_frames - 1) // temporal
    count = math.ceil(units / per_segment)
    base, extra = divmod(units, count)
    return [temporal * (base + (index < extra)) + 1 for index in range(count)]


def waypoints(guide: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """The guide generation's frames at the boundaries between segments (one per boundary)."""
    total = sum(n - 1 for n in lengths)
    last = len(guide) - 1
    points, elapsed = [], 0
    for n in lengths[:-1]:
        elapsed += n - 1
        points.append(guide[round(elapsed / total * last)])
    return points


def resample_frames(video: np.ndarray, count: int) -> Iterator[np.ndarray]:
    """``count`` frames spread evenly over ``video`` (first and last exact), linearly blended in between."""
    last = len(video) - 1
    for index in range(count):
        position = index * last / (count - 1) if count > 1 else 0.0
        low = min(int(math.floor(position)), last)
        weight = position - low
        if weight < 1e-6 or low == last:
            yield video[low]
        else:
            mixed = video[low].astype(np.float32) * (1 - weight) + video[low + 1].astype(np.float32) * weight
            yield np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- generation


def _generate(pipe, first: Image.Image, last: Image.Image | None, *, prompt: str, negative_prompt: str, width: int,
              height: int, frames: int, steps: int, guidance: float, seed: int, **extra: Any) -> np.ndarray:
    """One generation: ``frames`` RGB uint8 frames of ``height`` x ``width``."""
    import torch

    if last is not None:
        extra["last_image"] = last
    result = pipe(
        image=first, prompt=prompt, negative_prompt=negative_prompt or None, height=height, width=width,
        num_frames=frames, num_inference_steps=steps, guidance_scale=guidance,
        generator=torch.Generator(device="cpu").manual_seed(int(seed)), output_type="np", **extra,
    )
    video = np.asarray(result.frames[0], dtype=np.float32)
    return np.clip(np.rint(video * 255), 0, 255).astype(np.uint8)


@contextmanager
def _open_end(pipe, active: bool) -> Iterator[None]:
    """A first-last-frame generation with no last frame (an open segment of a long shot).

    The transformer takes two frames' CLIP tokens; without ``last_image`` the pipeline encodes one, and it
    refuses ``image`` together with ``image_embeds``. So, for this call only, the start frame's tokens are
    given twice, and the last frame's latent stays unconditioned (its mask is 0), as in image-to-video."""
    if not active:
        yield
        return
    encode = pipe.encode_image
    pipe.encode_image = lambda image, device=None: encode([image, image], device)
    try:
        yield
    finally:
        del pipe.encode_image


def _load_fitted(path: Path, width: int, height: int) -> Image.Image:
    """A keyframe cover-fitted (scaled and centre-cropped) to exactly ``width`` x ``height``."""
    image = open_image(path, what="keyframe")
    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def _compose_prompt(request: ClipRequest) -> str:
    parts = [p.strip().rstrip(".") for p in (request.prompt, request.motion_prompt) if p and p.strip()]
    return ". ".join(parts) + "." if parts else ""


# ---------------------------------------------------------------------- resolution and checks


def resolve_preset(preset: str) -> str:
    """``auto`` -> cuda-bf16 when CUDA is available, else cpu; cuda presets checked against what torch sees."""
    import torch

    if preset not in PRESETS:
        raise ValueError(f"{WanClips.where('device_preset')} = {preset!r}: expected one of {', '.join(PRESETS)}")
    if preset == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        return "cuda-bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "cuda-fp16"  # a T4 has none
    if preset.startswith("cuda") and not torch.cuda.is_available():
        raise model_support.cuda_unavailable(WanClips.where("device_preset"), preset)
    return preset


def resolve_model_source(model: str) -> str:
    """An existing folder (checked to be a Wan image-to-video diffusers folder) as an absolute path, else
    ``model`` unchanged as a Hugging Face repo id. Raises ValueError naming ``VIDEOS_WAN_MODEL``."""
    where = f"{WanClips.where('model')} = {model!r}"
    path = model_support.local_model_folder(model, where=where, expected="a diffusers pipeline folder")
    if path is None:
        return model.strip()
    index = model_support.diffusers_index(path, where=where, example="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    kind = index.get("_class_name")
    missing = model_support.missing_components(index, REQUIRED_COMPONENTS)
    if kind not in wan_families.PIPELINE_CLASSES or missing:
        detail = f"missing components: {', '.join(missing)}" if missing else f"it holds a {kind}"
        raise ValueError(f"{where}: {str(path)!r} is not a Wan image-to-video pipeline "
                         f"({' or '.join(wan_families.PIPELINE_CLASSES)}; {detail}).")
    model_support.check_component_folders(path, REQUIRED_COMPONENTS, where=where)
    return str(path.resolve())


def _transformer_config(source: str) -> dict[str, Any]:
    """The transformer's config.json (local folder or cached repo), checked for a usable conditioning layout."""
    from diffusers import WanTransformer3DModel

    where = f"{WanClips.where('model')} = {source!r}"
    try:
        config = dict(WanTransformer3DModel.load_config(source, subfolder="transformer"))
    except Exception as error:  # noqa: BLE001 - re-raised with the setting to fix
        raise RuntimeError(f"{where}: cannot read the transformer config: {error}. A repo id must already be in the "
                           "Hugging Face cache (or downloadable, when HF_HUB_OFFLINE is unset).") from error
    if config.get("in_channels") not in (36, 48):
        raise ValueError(f"{where}: the transformer takes {config.get('in_channels')} input channels, not 36 "
                         "(16 noise + 4 mask + 16 image latents) or 48 (Wan 2.2 TI2V): this is not a Wan "
                         "image-to-video model.")
    return config


def _pipeline_index(source: str) -> dict[str, Any]:
    """The pipeline's model_index.json (local folder or cached repo)."""
    from diffusers import WanImageToVideoPipeline

    try:
        return dict(WanImageToVideoPipeline.load_config(source))
    except Exception as error:  # noqa: BLE001 - re-raised with the setting to fix
        raise RuntimeError(f"{WanClips.where('model')} = {source!r}: cannot read model_index.json: {error}. "
                           f"{model_support.HF_CACHE_HINT}") from error


def _check_image_tokens(pipe, source: str) -> None:
    """An FLF2V transformer expects exactly two frames' worth of CLIP image tokens; anything else can never run."""
    seq_len = pipe.transformer.config.pos_embed_seq_len
    if not seq_len:
        return
    encoder = getattr(pipe, "image_encoder", None)
    if encoder is None:
        raise ValueError(f"{WanClips.where('model')} = {source!r}: a first-last-frame transformer needs an "
                         "image_encoder, and the pipeline has none.")
    vision = encoder.config
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1
    if seq_len != 2 * tokens:
        raise ValueError(f"{WanClips.where('model')} = {source!r}: the transformer's pos_embed_seq_len is {seq_len}"
                         f" but two frames give {2 * tokens} CLIP image tokens; the model cannot run.")


# ---------------------------------------------------------------------- the per-process pipeline


@dataclass
class _Loaded:
    pipe: Any


_MODEL: model_support.ProcessModel[_Loaded] = model_support.ProcessModel()


def _dtypes(preset: str):
    import torch

    if preset == "cpu":
        return torch.float32
    main = torch.float16 if preset == "cuda-fp16" else torch.bfloat16
    return {"default": main, "vae": torch.float32, "image_encoder": torch.float32}


def _pipeline(source: str, preset: str, plan: memory_plan.MemoryPlan | None = None, levers: tuple = ()):
    """The loaded pipeline for ``source``, the resolved ``preset``, the memory ``plan``'s placement and the
    model-changing levers (``Levers.load_key()``; loaded at most once per process; another placement or
    another set of such levers reloads it)."""

    def load() -> _Loaded:
        from diffusers import WanImageToVideoPipeline

        try:
            pipe = WanImageToVideoPipeline.from_pretrained(source, dtype=_dtypes(preset))
        except Exception as error:  # noqa: BLE001 - re-raised with the setting to fix
            raise RuntimeError(
                f"{WanClips.where('model')} = {source!r}: could not load a Wan image-to-video pipeline: {error}. "
                f"{model_support.HF_CACHE_HINT}"
            ) from error
        _check_image_tokens(pipe, source)
        if plan is not None:
            memory_plan.apply_wan_placement(pipe, plan)
        pipe.set_progress_bar_config(disable=True)
        return _Loaded(pipe)

    return _MODEL.get((source, preset, plan.label if plan is not None else None, *model_levers.key_part(levers)),
                      load).pipe


# ``loaded_key()``: ``(source, preset, placement)`` (and the levers' load key when set) of the pipeline held by
# this process, if any.
loaded_key = _MODEL.key
__getattr__ = _MODEL.module_getattr(__name__)  # ``_LOADED``: the held pipeline
