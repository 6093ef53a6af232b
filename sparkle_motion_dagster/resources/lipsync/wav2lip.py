"""Lipsync with Wav2Lip: mouths on talking closeups redrawn to match the dialogue, everything else untouched.

What is processed
    Only frames of shots flagged ``is_talking_closeup`` that fall inside a
    dialogue window (``windows``, seconds on the film clock: frame ``f`` is in
    ``[start_s, end_s)`` when ``round(start_s * fps) <= f < round(end_s * fps)``,
    the rounding the shots' frame counts use).
    Every other frame keeps its pixels. With ``shots`` (see
    ``LipsyncEngine.apply``) carrying each shot's clip, a shot with no changed
    frame is not decoded or re-encoded at all: its clip is stream-copied into
    the final cut, bit for bit. A shot that changes is re-encoded once, with the
    same encoder as every other clip (``media.ffmpeg.FrameEncoder``), so
    the clips still join by stream copy; its frames outside the windows are
    passed through pixel for pixel before that encode. Without clip paths the
    whole master is decoded and re-encoded once (``mode: full_reencode``).

Faces
    Detected in every frame of a window (and a few around it, for smoothing)
    by ``face_detect`` (OpenCV's Haar cascade by default: no download), tracked
    and smoothed over time within the shot, padded down to cover the chin. A
    frame without a face after tracking is passed through untouched and listed
    under ``no_face_frames``; the run does not fail.

The model
    The face crop is resized to 96x96 and given to Wav2Lip with its lower half
    masked, together with the 16-mel-frame window of the dialogue that starts
    at the frame's time (``lipsync_audio``). Its 96x96 output is scaled back to
    the box and blended in through a feathered ellipse over the mouth and jaw
    (full weight in the inner 60 %, a smoothstep to zero at the edge, never
    reaching the box border): no hard rectangle, no blurred box.

Outputs (the result dict): ``lipsync_applied``, ``changed_frames`` and
``windows`` (each with its frame range and counts) as the interface requires,
plus ``frame_alignment`` (for every changed frame: the shot, the line and the
audio window it was driven by), ``no_face_frames``, ``lipsync_clips``
(per-shot clips of artifact type ``shot_lipsync_video``), ``shots``, ``mode``
and the model, detector and audio settings.

Configuration
    ``Wav2LipLipsync`` is plain configuration; the network is loaded once per
    process into a module-level cache and freed by ``Wav2LipLipsync.release()``.
    ``Wav2LipLipsync.from_env()`` reads (``None`` when ``WAV2LIP_CHECKPOINT``
    is unset; each field names its variable, see ``resources/settings.py``):

    ========================  ==========================================================
    WAV2LIP_CHECKPOINT        the generator checkpoint: the official ``wav2lip.pth`` or
                              ``wav2lip_gan.pth`` (or any state_dict of the same network,
                              e.g. ``sparkle-motion dev make-tiny-models``)
    WAV2LIP_DEVICE            auto (default), cpu, cuda, cuda:N
    WAV2LIP_DTYPE             auto (float16 on CUDA, float32 on CPU), float32, float16
    WAV2LIP_BATCH_SIZE        frames per forward pass (32)
    WAV2LIP_FACE_DETECTOR     auto (default), opencv-haar, skimage-lbp, s3fd:<checkpoint>
    WAV2LIP_FACE_PADDING      "top,bottom,left,right" growth of the face box as fractions of
                              its size ("" = the detector's own default)
    WAV2LIP_SMOOTH_FRAMES     moving-average window of the face boxes (5)
    WAV2LIP_MAX_GAP_FRAMES    missed detections bridged by interpolation (3)
    WAV2LIP_DETECT_MAX_SIDE   frames are shrunk to this longer side for detection (480; 0 = as is)
    ========================  ==========================================================

    Checkpoints are read with ``torch.load(weights_only=True)``: tensors and
    plain containers only, no code from the file runs.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import field_validator

from sparkle_motion_dagster.film.plan import id_problem
from sparkle_motion_dagster.media.ffmpeg import (
    FrameEncoder as ClipEncoder,  # the one encoder, under the name tests patch
)
from sparkle_motion_dagster.media.ffmpeg import concat_copy, iter_video_frames, mux_audio, probe
from sparkle_motion_dagster.resources import model_support
from sparkle_motion_dagster.resources.lipsync import LipsyncEngine
from sparkle_motion_dagster.resources.settings import DEVICE, DEVICE_CHOICES, NOT_BLANK, EnvConfigured, env_field
from sparkle_motion_dagster.store.storage import atomic_output, sha256_file

ARTIFACT_TYPE = "shot_lipsync_video"
FACE_SIZE = 96
# The blend: an ellipse over mouth and jaw in face-box coordinates (0..1), feathered over its outer part.
MOUTH_CENTER = (0.5, 0.745)
MOUTH_RADII = (0.38, 0.245)
MOUTH_FEATHER = 0.4
_UNBOUNDED = 10**9

class Wav2LipLipsync(EnvConfigured, LipsyncEngine):
    """Wav2Lip on talking closeups during dialogue (see the module docstring)."""

    backend: ClassVar[str] = "wav2lip"
    switch: ClassVar[str] = "checkpoint"

    checkpoint: str = env_field("WAV2LIP_CHECKPOINT", pattern=NOT_BLANK, expected="must name a .pth checkpoint")
    device: str = env_field("WAV2LIP_DEVICE", "auto", pattern=DEVICE, expected=DEVICE_CHOICES)
    dtype: Literal["auto", "float32", "float16"] = env_field("WAV2LIP_DTYPE", "auto")
    batch_size: int = env_field("WAV2LIP_BATCH_SIZE", 32, ge=1)
    face_detector: str = env_field("WAV2LIP_FACE_DETECTOR", "auto")
    face_padding: str = env_field("WAV2LIP_FACE_PADDING", "")
    smooth_frames: int = env_field("WAV2LIP_SMOOTH_FRAMES", 5, ge=1)
    max_gap_frames: int = env_field("WAV2LIP_MAX_GAP_FRAMES", 3, ge=0)
    detect_max_side: int = env_field("WAV2LIP_DETECT_MAX_SIDE", 480, ge=0)

    @field_validator("face_detector")
    @classmethod
    def _known_detector(cls, spec: str) -> str:
        from sparkle_motion_dagster.resources.lipsync.face_detect import DETECTOR_CHOICES, detector_kind

        try:
            detector_kind(spec)
        except ValueError:
            raise ValueError(DETECTOR_CHOICES) from None
        return spec

    @field_validator("face_padding")
    @classmethod
    def _four_fractions(cls, text: str) -> str:
        parse_padding(text)
        return text

    @field_validator("detect_max_side")
    @classmethod
    def _full_size_or_a_face(cls, side: int) -> int:
        if 0 < side < 64:
            raise ValueError("0 (full size) or at least 64")
        return side

    def padding(self) -> tuple[float, float, float, float] | None:
        """``face_padding`` parsed: (top, bottom, left, right) fractions, or None for the detector's default."""
        return parse_padding(self.face_padding)

    def required_packages(self) -> tuple[str, ...]:
        detector = {"opencv-haar": ("cv2",), "skimage-lbp": ("skimage",)}
        return ("torch", *detector.get(self.face_detector.strip().lower(), ()))

    def release(self) -> None:
        """Free this process's Wav2Lip generator and face detectors; the next film loads them again."""
        release()

    def runtime(self) -> dict[str, Any]:
        """Resolve the checkpoint file, device and dtype without loading weights; raise clear errors."""
        self.validate_settings()
        _require_packages()
        path = Path(self.checkpoint).expanduser()
        where = f"{self.where('checkpoint')} = {self.checkpoint!r}"
        if not path.exists():
            raise ValueError(f"{where}: the file does not exist. Point it at the official wav2lip.pth or "
                             "wav2lip_gan.pth (or a checkpoint from `sparkle-motion dev make-tiny-models`).")
        if not path.is_file():
            raise ValueError(f"{where}: not a file (expected a .pth checkpoint)")
        device = resolve_device(self.device)
        dtype = "float32" if device == "cpu" or self.dtype == "float32" else "float16"
        if self.dtype == "float16" and device == "cpu":
            raise ValueError(f"{self.where('dtype')} = float16 is not supported on cpu: use float32 or auto")
        return {"checkpoint": str(path.resolve()), "device": device, "dtype": dtype}

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the output for the same video and audio."""
        runtime = self.runtime()
        return {"backend": self.backend, **self.model_dump(),
                "resolved": {"device": runtime["device"], "dtype": runtime["dtype"],
                             "checkpoint_sha256": file_sha256(runtime["checkpoint"])}}

    # ------------------------------------------------------------------ the work

    def syncer(self, mel: np.ndarray, fps: float) -> FrameSyncer:
        """The in-memory core (model, detector, audio) for one dialogue track; loads the model if needed."""
        runtime = self.runtime()
        model = _model(runtime["checkpoint"], runtime["device"], runtime["dtype"])
        detector = _detector(self.face_detector, runtime["device"], self.detect_max_side)
        padding = self.padding() or tuple(detector.default_padding)
        return FrameSyncer(model=model, device=runtime["device"], dtype=runtime["dtype"], detector=detector,
                           padding=padding, smooth_frames=self.smooth_frames, max_gap_frames=self.max_gap_frames,
                           batch_size=self.batch_size, mel=mel, fps=fps, checkpoint=runtime["checkpoint"])

    def apply(self, video, audio, out_path, *, windows, fps, shots=None, work_dir=None):
        from sparkle_motion_dagster.resources.lipsync.mel import audio_melspectrogram

        video, audio, out_path = Path(video), Path(audio), Path(out_path)
        work = Path(work_dir) if work_dir is not None else None
        table = _shot_table(shots)
        frame_map, window_reports = frames_to_sync(windows, fps, table)
        if not frame_map:
            mux_audio(video, audio, out_path)
            return self._result(window_reports, "mux_only", table, {}, [], [], None)
        syncer = self.syncer(audio_melspectrogram(audio), fps)
        if shots and all(s["clip_path"] and Path(s["clip_path"]).is_file() for s in table):
            changed, no_face, clips = self._per_shot(video, audio, out_path, table, frame_map, syncer, work, fps)
            mode = "per_shot_copy" if changed else "mux_only"
        else:
            changed, no_face, clips = self._full(video, audio, out_path, table, frame_map, syncer,
                                                 work if shots else None, fps)
            mode = "full_reencode" if changed else "mux_only"
        return self._result(window_reports, mode, table, changed, no_face, clips, syncer)

    def _per_shot(self, video, audio, out_path, table, frame_map, syncer, work_dir, fps):
        """Re-encode only the shots that change; stream-copy every other clip."""
        changed: dict[int, dict] = {}
        no_face: list[int] = []
        clips: list[dict] = []
        replaced: dict[int, Path] = {}
        with tempfile.TemporaryDirectory(prefix=".lipsync-", dir=out_path.parent) as scratch:
            for index, shot in enumerate(table):
                wanted = sorted(f for f in frame_map if shot["start_frame"] <= f < shot["end_frame"])
                if not wanted:
                    continue
                clip = Path(shot["clip_path"])
                info = probe(clip)
                reader = functools.partial(iter_video_frames, clip, info["width"], info["height"])
                boxes, missing = syncer.track(reader, shot["start_frame"], wanted, shot["end_frame"])
                no_face.extend(missing)
                if not boxes:
                    continue  # no face in this shot's windows: its clip is copied as it is
                dest = (work_dir or Path(scratch)) / f"{_clip_name(shot, index)}.mp4"
                dest.parent.mkdir(parents=True, exist_ok=True)
                written = shot_changed = 0
                keyframes = [f - shot["start_frame"] for f in boundary_frames(boxes)]
                with atomic_output(dest) as temp, ClipEncoder(temp, width=info["width"], height=info["height"],
                                                              fps=fps, keyframes=keyframes) as encoder:
                    for frame_index, frame, did_change in syncer.render(reader(), shot["start_frame"], boxes):
                        encoder.write(np.ascontiguousarray(frame).tobytes())
                        written += 1
                        if did_change:
                            shot_changed += 1
                            changed[frame_index] = {"shot_id": shot["shot_id"], "box": boxes[frame_index],
                                                    **frame_map[frame_index]}
                replaced[index] = dest
                if work_dir is not None:
                    shot["lipsync_clip"] = str(dest)
                    clips.append({"shot_id": shot["shot_id"], "path": str(dest), "artifact_type": ARTIFACT_TYPE,
                                  "num_frames": written, "changed_frames": shot_changed})
            if not replaced:
                mux_audio(video, audio, out_path)
            else:
                master = Path(scratch) / "master.mp4"
                concat_copy([replaced.get(i, Path(s["clip_path"])) for i, s in enumerate(table)], master,
                            Path(scratch) / "concat.txt")
                mux_audio(master, audio, out_path)
        return changed, sorted(no_face), clips

    def _full(self, video, audio, out_path, table, frame_map, syncer, work_dir, fps):
        """Decode the master and re-encode it once (plus clips of the shots that changed, with ``work_dir``)."""
        info = probe(video)
        width, height = info["width"], info["height"]
        reader = functools.partial(iter_video_frames, video, width, height)
        segments = []
        for shot in table:
            wanted = sorted(f for f in frame_map if shot["start_frame"] <= f < shot["end_frame"])
            if wanted:
                segments.append((wanted, *syncer.detection_range(wanted, shot["start_frame"], shot["end_frame"])))
        detections, size = syncer.detect(reader, 0, [(lo, hi) for _, lo, hi in segments])
        boxes: dict[int, tuple[int, int, int, int]] = {}
        no_face: list[int] = []
        for wanted, lo, hi in segments:
            found, missing = syncer.boxes_for(detections, size, wanted, lo, hi)
            boxes.update(found)
            no_face.extend(missing)
        changed: dict[int, dict] = {}
        if not boxes:
            mux_audio(video, audio, out_path)
            return changed, sorted(no_face), []
        shot_of = _shot_lookup(table)
        with tempfile.TemporaryDirectory(prefix=".lipsync-", dir=out_path.parent) as scratch:
            master = Path(scratch) / "master.mp4"
            keyframes = boundary_frames(boxes)
            clip_writer = _ShotClipWriter(table, {shot_of(f) for f in boxes}, work_dir, width, height, fps, keyframes)
            try:
                with ClipEncoder(master, width=width, height=height, fps=fps, keyframes=keyframes) as encoder:
                    for frame_index, frame, did_change in syncer.render(reader(), 0, boxes):
                        data = np.ascontiguousarray(frame).tobytes()
                        encoder.write(data)
                        shot_index = shot_of(frame_index)
                        clip_writer.write(shot_index, data, did_change)
                        if did_change:
                            changed[frame_index] = {"shot_id": table[shot_index]["shot_id"],
                                                    "box": boxes[frame_index], **frame_map[frame_index]}
            except BaseException:
                clip_writer.abort()
                raise
            clip_writer.finish()
            mux_audio(master, audio, out_path)
        return changed, sorted(no_face), clip_writer.clips

    def _result(self, windows, mode, table, changed, no_face, clips, syncer) -> dict[str, Any]:
        from sparkle_motion_dagster.resources.lipsync import mel as la

        missing = set(no_face)
        for report in windows:
            frames = report.pop("_frames")
            report["changed_frames"] = sum(1 for f in frames if f in changed)
            report["no_face_frames"] = sum(1 for f in frames if f in missing)
        alignment = []
        if changed:
            starts = la.mel_window_starts(sorted(changed), syncer.fps, syncer.mel.shape[1])
            for frame, start in zip(sorted(changed), starts):
                audio_start, audio_end = la.mel_window_seconds(int(start))
                info = changed[frame]
                alignment.append({"frame": frame, "shot_id": info["shot_id"], "line_id": info["line_id"],
                                  "window_index": info["window_index"], "mel_start": int(start),
                                  "audio_start_s": audio_start, "audio_end_s": audio_end, "box": list(info["box"])})
        shots = []
        if table[0]["shot_id"] is not None or len(table) > 1:
            for s in table:
                shots.append({"shot_id": s["shot_id"], "start_frame": s["start_frame"], "num_frames": s["num_frames"],
                              "is_talking_closeup": s["is_talking_closeup"], "lipsync_clip": s["lipsync_clip"],
                              "changed_frames": sum(1 for f in changed if s["start_frame"] <= f < s["end_frame"])})
        result: dict[str, Any] = {
            "lipsync_applied": bool(changed),
            "changed_frames": sorted(changed),
            "windows": windows,
            "frame_alignment": alignment,
            "no_face_frames": sorted(missing),
            "lipsync_clips": clips,
            "shots": shots,
            "mode": mode,
            "audio": {"sample_rate": la.SAMPLE_RATE, "mel_bins": la.NUM_MELS, "hop_length": la.HOP_LENGTH,
                      "mel_frames_per_second": la.MEL_FRAMES_PER_SECOND, "window_mel_frames": la.MEL_STEP,
                      "window_sec": la.WINDOW_SECONDS,
                      "rule": "frame f uses mel frames [int(f * 80 / fps), +16), the last 16 at the end"},
            "blend": {"shape": "feathered ellipse over mouth and jaw (face-box fractions)",
                      "center": list(MOUTH_CENTER), "radii": list(MOUTH_RADII), "feather": MOUTH_FEATHER},
        }
        if syncer is not None:
            result["model"] = syncer.describe()
        return result


class _ShotClipWriter:
    """Per-shot clips written alongside the full re-encode: one encoder open at a time."""

    def __init__(self, table, wanted_shots, work_dir, width, height, fps, keyframes):
        self.table, self.wanted, self.work_dir = table, wanted_shots, work_dir
        self.width, self.height, self.fps, self.keyframes = width, height, fps, keyframes
        self.clips: list[dict] = []
        self._current: int | None = None
        self._stack: contextlib.ExitStack | None = None
        self._encoder: ClipEncoder | None = None

    def write(self, shot_index: int, data, did_change: bool) -> None:
        if self.work_dir is None:
            return
        if shot_index != self._current:
            self.finish()
            self._current = shot_index
            if shot_index in self.wanted:
                shot = self.table[shot_index]
                dest = self.work_dir / f"{_clip_name(shot, shot_index)}.mp4"
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._stack = contextlib.ExitStack()
                temp = self._stack.enter_context(atomic_output(dest))
                start = shot["start_frame"]
                self._encoder = self._stack.enter_context(ClipEncoder(
                    temp, width=self.width, height=self.height, fps=self.fps,
                    keyframes=[k - start for k in self.keyframes if start <= k < shot["end_frame"]]))
                shot["lipsync_clip"] = str(dest)
                self.clips.append({"shot_id": shot["shot_id"], "path": str(dest), "artifact_type": ARTIFACT_TYPE,
                                   "num_frames": 0, "changed_frames": 0})
        if self._encoder is not None:
            self._encoder.write(data)
            self.clips[-1]["num_frames"] += 1
            self.clips[-1]["changed_frames"] += int(did_change)

    def finish(self) -> None:
        stack, self._stack, self._encoder = self._stack, None, None
        if stack is not None:
            stack.close()

    def abort(self) -> None:
        import sys

        stack, self._stack, self._encoder = self._stack, None, None
        if stack is not None:
            stack.__exit__(*sys.exc_info())


def _clip_name(shot: dict, index: int) -> str:
    """The per-shot clip's file stem: the shot id when it is safe as a file name, else ``shot_NNN``."""
    shot_id = shot["shot_id"]
    if shot_id and id_problem(str(shot_id)) is None:
        return str(shot_id)
    return f"shot_{index:03d}"


def boundary_frames(changed) -> list[int]:
    """The first frame of every run of changed frames and the first frame after it.

    Keyframes there keep the encoder from predicting untouched frames from redrawn ones (a ghost of the
    generated mouth after a window) and redrawn frames from untouched ones.
    """
    frames = sorted(changed)
    marks = []
    for k, frame in enumerate(frames):
        if k == 0 or frames[k - 1] != frame - 1:
            marks.append(frame)
        if k == len(frames) - 1 or frames[k + 1] != frame + 1:
            marks.append(frame + 1)
    return marks


# ---------------------------------------------------------------------- frames to process


def _shot_table(shots: list[dict] | None) -> list[dict[str, Any]]:
    """Normalised shots with ``end_frame``; one unbounded pseudo-shot when there are none."""
    if not shots:
        return [{"shot_id": None, "start_frame": 0, "num_frames": _UNBOUNDED, "end_frame": _UNBOUNDED,
                 "is_talking_closeup": True, "clip_path": None, "lipsync_clip": None}]
    table = []
    for shot in shots:
        start, count = int(shot["start_frame"]), int(shot["num_frames"])
        table.append({"shot_id": shot.get("shot_id"), "start_frame": start, "num_frames": count,
                      "end_frame": start + count, "is_talking_closeup": bool(shot.get("is_talking_closeup", False)),
                      "clip_path": shot.get("clip_path"), "lipsync_clip": None})
    return table


def _shot_lookup(table: list[dict]) -> Callable[[int], int]:
    starts = [s["start_frame"] for s in table]

    def shot_of(frame: int) -> int:
        import bisect

        return max(0, bisect.bisect_right(starts, frame) - 1)

    return shot_of


def frames_to_sync(windows: list[dict], fps: float, table: list[dict]) -> tuple[dict[int, dict], list[dict]]:
    """``{frame: {"line_id", "window_index"}}`` for frames of talking closeups inside windows, and the windows
    with their frame ranges (``start_frame``/``end_frame`` exclusive, ``frames`` on talking closeups)."""
    frame_map: dict[int, dict] = {}
    reports = []
    for index, window in enumerate(windows):
        start_s, end_s = float(window["start_s"]), float(window["end_s"])
        first, last = round(start_s * fps + 1e-9), round(end_s * fps + 1e-9)  # as timeline.shot_frame_counts rounds
        if last <= first and end_s > start_s:
            last = first + 1
        frames: list[int] = []
        for shot in table:
            if not shot["is_talking_closeup"]:
                continue
            if window.get("shot_id") is not None and shot["shot_id"] is not None and window["shot_id"] != shot["shot_id"]:
                continue
            for frame in range(max(first, shot["start_frame"]), min(last, shot["end_frame"])):
                frames.append(frame)
                frame_map.setdefault(frame, {"line_id": window.get("line_id"), "window_index": index})
        reports.append({**window, "start_frame": first, "end_frame": last, "frames": len(frames), "_frames": frames})
    return frame_map, reports


# ---------------------------------------------------------------------- the in-memory core


def mouth_mask(height: int, width: int) -> np.ndarray:
    """``(height, width, 1)`` float32 blend weights: 1 inside the mouth ellipse's core, 0 at and beyond its edge."""
    return _mouth_mask(int(height), int(width))


@functools.lru_cache(maxsize=64)
def _mouth_mask(height: int, width: int) -> np.ndarray:
    v = (np.arange(height, dtype=np.float32) + 0.5) / height
    u = (np.arange(width, dtype=np.float32) + 0.5) / width
    dy = (v[:, None] - MOUTH_CENTER[1]) / MOUTH_RADII[1]
    dx = (u[None, :] - MOUTH_CENTER[0]) / MOUTH_RADII[0]
    distance = np.sqrt(dx * dx + dy * dy)
    t = np.clip((1.0 - distance) / MOUTH_FEATHER, 0.0, 1.0)
    mask = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    mask.setflags(write=False)
    return mask[..., None]


@dataclass
class FrameSyncer:
    """Detection, tracking, Wav2Lip and blending on frames in memory, for one dialogue track (``mel``)."""

    model: Any
    device: str
    dtype: str
    detector: Any
    padding: tuple[float, float, float, float]
    smooth_frames: int
    max_gap_frames: int
    batch_size: int
    mel: np.ndarray
    fps: float
    checkpoint: str = ""

    def describe(self) -> dict[str, Any]:
        from sparkle_motion_dagster.resources.lipsync.wav2lip_model import parameter_count

        return {"checkpoint": self.checkpoint, "base_channels": self.model.base_channels,
                "parameters": parameter_count(self.model), "device": self.device, "dtype": self.dtype, "batch_size": self.batch_size,
                "face_detector": getattr(self.detector, "name", type(self.detector).__name__),
                "face_padding": list(self.padding), "smooth_frames": self.smooth_frames,
                "max_gap_frames": self.max_gap_frames}

    def detection_range(self, wanted: list[int], segment_start: int, segment_end: int) -> tuple[int, int]:
        """Frames to run the detector on for ``wanted``: a margin for smoothing, never across the segment."""
        margin = self.smooth_frames // 2 + self.max_gap_frames
        return max(segment_start, wanted[0] - margin), min(segment_end, wanted[-1] + 1 + margin)

    def detect(self, reader: Callable[[], Iterator[np.ndarray]], first: int, ranges: list[tuple[int, int]]
               ) -> tuple[dict[int, list], tuple[int, int] | None]:
        """One decoding pass: detections for every frame inside ``ranges`` (frames numbered from ``first``),
        and the frame size ``(width, height)``."""
        detections: dict[int, list] = {}
        size = None
        if not ranges:
            return detections, size
        stop = max(hi for _, hi in ranges)
        frames = reader()
        try:
            for offset, frame in enumerate(frames):
                index = first + offset
                if index >= stop:
                    break
                if any(lo <= index < hi for lo, hi in ranges):
                    detections[index] = self.detector.detect(frame)
                    size = frame.shape[1], frame.shape[0]
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        return detections, size

    def boxes_for(self, detections: Mapping[int, list], size: tuple[int, int] | None, wanted: list[int], lo: int,
                  hi: int) -> tuple[dict[int, tuple[int, int, int, int]], list[int]]:
        """Track faces over ``[lo, hi)`` and keep the padded, clipped integer boxes of the ``wanted`` frames;
        also the wanted frames that have no face."""
        from sparkle_motion_dagster.resources.lipsync.face_detect import track_faces

        if size is None:
            return {}, list(wanted)
        span = list(range(lo, hi))
        tracked = track_faces([detections.get(i, []) for i in span], smooth_window=self.smooth_frames,
                              max_gap=self.max_gap_frames)
        by_frame = dict(zip(span, tracked))
        boxes, missing = {}, []
        for index in wanted:
            box = by_frame.get(index)
            if box is None:
                missing.append(index)
                continue
            x1, y1, x2, y2 = box.padded(*self.padding).clipped_int(*size)
            if x2 - x1 < 8 or y2 - y1 < 8:
                missing.append(index)
                continue
            boxes[index] = (x1, y1, x2, y2)
        return boxes, missing

    def track(self, reader: Callable[[], Iterator[np.ndarray]], first: int, wanted: list[int], end: int
              ) -> tuple[dict[int, tuple[int, int, int, int]], list[int]]:
        """Boxes for the ``wanted`` frames of one shot whose frames ``reader()`` yields from ``first`` to ``end``."""
        if not wanted:
            return {}, []
        lo, hi = self.detection_range(wanted, first, end)
        detections, size = self.detect(reader, first, [(lo, hi)])
        return self.boxes_for(detections, size, wanted, lo, hi)

    def render(self, frames: Iterator[np.ndarray], first: int,
               boxes: Mapping[int, tuple[int, int, int, int]]) -> Iterator[tuple[int, np.ndarray, bool]]:
        """``(frame index, frame, changed)`` for every frame, in order; frames with a box get a new mouth."""
        pending: list[tuple[int, np.ndarray]] = []
        queued = 0
        try:
            for offset, frame in enumerate(frames):
                index = first + offset
                if index not in boxes and not queued:
                    yield index, frame, False  # nothing to wait for: straight through
                    continue
                pending.append((index, frame))
                if index in boxes:
                    queued += 1
                # a full batch, or untouched frames piling up behind a partial one: run the model now
                if queued >= self.batch_size or len(pending) >= 2 * self.batch_size:
                    yield from self._flush(pending, boxes)
                    pending, queued = [], 0
            yield from self._flush(pending, boxes)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def _flush(self, pending, boxes):
        work = [(i, frame) for i, frame in pending if i in boxes]
        results = dict(zip([i for i, _ in work], self.sync_batch([f for _, f in work], [i for i, _ in work],
                                                                  [boxes[i] for i, _ in work]))) if work else {}
        for index, frame in pending:
            if index in results:
                yield index, results[index], True
            else:
                yield index, frame, False

    def sync_batch(self, frames: list[np.ndarray], indices: list[int],
                   boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
        """New frames for ``frames`` (film frame numbers ``indices``), each with its mouth redrawn inside ``box``."""
        import torch
        from PIL import Image

        from sparkle_motion_dagster.resources.lipsync.mel import mel_windows

        faces = np.empty((len(frames), FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
        for k, (frame, (x1, y1, x2, y2)) in enumerate(zip(frames, boxes)):
            crop = Image.fromarray(np.ascontiguousarray(frame[y1:y2, x1:x2]))
            faces[k] = np.asarray(crop.resize((FACE_SIZE, FACE_SIZE), Image.Resampling.BILINEAR))
        bgr = faces[..., ::-1].astype(np.float32) / 255.0
        masked = bgr.copy()
        masked[:, FACE_SIZE // 2:] = 0.0
        face_input = np.concatenate([masked, bgr], axis=3).transpose(0, 3, 1, 2)
        mel, _ = mel_windows(self.mel, indices, self.fps)
        dtype = getattr(torch, self.dtype)
        with torch.inference_mode():
            audio_t = torch.from_numpy(mel[:, None]).to(self.device, dtype)
            face_t = torch.from_numpy(np.ascontiguousarray(face_input)).to(self.device, dtype)
            predicted = self.model(audio_t, face_t).float().cpu().numpy()
        predicted = (predicted.transpose(0, 2, 3, 1)[..., ::-1] * 255.0).clip(0, 255)  # BGR -> RGB
        out = []
        for frame, (x1, y1, x2, y2), mouth in zip(frames, boxes, predicted):
            width, height = x2 - x1, y2 - y1
            new = np.asarray(Image.fromarray(mouth.round().astype(np.uint8)).resize((width, height),
                                                                                   Image.Resampling.BICUBIC))
            result = np.array(frame, copy=True)
            region = result[y1:y2, x1:x2].astype(np.float32)
            alpha = mouth_mask(height, width)
            blended = region + alpha * (new.astype(np.float32) - region)
            result[y1:y2, x1:x2] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
            out.append(result)
        return out

    def sync_frames(self, frames: list[np.ndarray] | np.ndarray, *, first: int, wanted: list[int]
                    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        """All of it on frames in memory (one shot, numbered from ``first``): detect and track in the
        ``wanted`` frames, redraw the mouths there, return every frame and what was done."""
        frames = list(frames)
        boxes, missing = self.track(lambda: iter(frames), first, sorted(wanted), first + len(frames))
        out, changed = [], []
        for index, frame, did_change in self.render(iter(frames), first, boxes):
            out.append(frame)
            if did_change:
                changed.append(index)
        return out, {"changed_frames": changed, "no_face_frames": missing, "boxes": boxes}


# ---------------------------------------------------------------------- helpers


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; cuda/cuda:N checked against what torch sees."""
    return model_support.resolve_device(device, where=Wav2LipLipsync.where("device"))


def parse_padding(text: str) -> tuple[float, float, float, float] | None:
    """A face padding setting: "top,bottom,left,right" fractions of the box size (-0.5 to 1), or None for ""."""
    text = text.strip()
    if not text:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or any(not -0.5 <= v <= 1.0 for v in values):
        raise ValueError("expected four comma-separated fractions of the box size between -0.5 and 1, e.g. 0,0.12,0,0")
    return values  # type: ignore[return-value]


def _require_packages() -> None:
    from importlib.util import find_spec

    model_support.require_packages("Wav2Lip lipsync", "torch")
    if find_spec("cv2") is None and find_spec("skimage") is None:
        raise RuntimeError("the Wav2Lip lipsync backend needs a face detector: pip install "
                           "opencv-python-headless (4.x, ships the Haar cascades) or scikit-image")


_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """The file's sha256 (cached per path, size and mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


# ---------------------------------------------------------------------- the per-process model


_MODEL: model_support.ProcessModel[Any] = model_support.ProcessModel()
_LOCK = _MODEL.lock
_DETECTORS: dict[tuple, Any] = {}


def _model(checkpoint: str, device: str, dtype: str):
    """The generator for these settings (loaded at most once per process and file version)."""
    stat = Path(checkpoint).stat()

    def load():
        import torch

        from sparkle_motion_dagster.resources.lipsync.wav2lip_model import load_state_dict_file, model_from_state_dict

        try:
            model = model_from_state_dict(load_state_dict_file(checkpoint))
        except ValueError as error:
            raise ValueError(f"{Wav2LipLipsync.where('checkpoint')} = {checkpoint!r}: {error}") from error
        model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model

    return _MODEL.get((checkpoint, stat.st_size, stat.st_mtime_ns, device, dtype), load)


def _detector(spec: str, device: str, max_side: int):
    from sparkle_motion_dagster.resources.lipsync.face_detect import make_detector

    key = (spec.strip().lower() if spec else "auto", device, max_side)
    with _LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = make_detector(spec, device=device, max_side=max_side)
        return _DETECTORS[key]


# ``loaded_key()``: ``(checkpoint, size, mtime_ns, device, dtype)`` of the generator held by this process, if any.
loaded_key = _MODEL.key
# ``release_model()``: free the generator only (the face detectors stay).
release_model = _MODEL.release
__getattr__ = _MODEL.module_getattr(__name__)  # ``_LOADED``: the held generator


def release() -> None:
    """Free the process's Wav2Lip generator and face detectors (and the CUDA cache). Safe at any time."""
    with _LOCK:
        _DETECTORS.clear()
        release_model()


__all__ = [
    "ARTIFACT_TYPE",
    "FrameSyncer",
    "Wav2LipLipsync",
    "file_sha256",
    "frames_to_sync",
    "iter_video_frames",
    "loaded_key",
    "mouth_mask",
    "release",
    "resolve_device",
]
