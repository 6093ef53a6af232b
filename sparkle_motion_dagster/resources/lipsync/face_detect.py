"""Face boxes for lipsync: detectors that need no download, an optional S3FD, and tracking over time.

Detectors (``make_detector(spec)``; every one takes an RGB ``uint8`` frame and
returns :class:`Box` es in that frame's pixel coordinates):

============================  ================================================================
``auto`` / ``""``             ``opencv-haar`` when OpenCV is installed, else ``skimage-lbp``
``opencv-haar``               OpenCV's ``haarcascade_frontalface_default.xml``, shipped inside
                              the opencv-python(-headless) 4.x wheels (``cv2.data``)
``skimage-lbp``               scikit-image's bundled LBP frontal-face cascade
                              (``skimage.data.lbp_frontal_face_cascade_filename()``, run by
                              ``skimage.feature.Cascade``; OpenCV 4.14 refuses that XML file)
``s3fd:PATH`` or ``PATH``     S3FD (Zhang et al. 2017), the detector the official Wav2Lip
                              scripts use, from its checkpoint (``s3fd.pth`` /
                              ``s3fd-619a316812.pth`` of face_alignment); needs torch
============================  ================================================================

The cascades are fast and need nothing but the wheel; they find frontal faces
only and miss some frames, which the tracker below absorbs. Frames are shrunk
to ``max_side`` (480 px) for detection and faces smaller than 10 % (Haar) or
12 % (LBP) of the frame's shorter side are not searched for: lipsync on a face
that small would not show anyway, and the search is 2-3x faster. S3FD is more
robust (profiles, small faces, occlusion) and slower (a VGG-16 on the frame:
use a GPU). Its network is written here with the official module names, so the
published checkpoint loads unchanged; the decoding follows the official one
(anchors of 4 x stride on 6 feature maps, variances 0.1/0.2, candidates above
0.05, NMS at 0.3, faces above 0.5). A new detector is a class with ``name``,
``default_padding`` and ``detect(frame_rgb) -> list[Box]``, returned by
:func:`make_detector`.

Tracking (:func:`track_faces`): each frame keeps the detection that best
continues the previous frame's face (largest overlap, else the largest box);
a lone box that disagrees with two agreeing neighbours is dropped as a false
positive; gaps of up to ``max_gap`` frames between detections are filled by
linear interpolation; a run backed by fewer than 3 detections (a stray hit in
a faceless stretch) is dropped; each run of boxes is then smoothed with a centred moving
average over ``smooth_window`` frames (the official scripts average 5 frames
forward). Frames left without a box have no face: the lipsync passes them
through untouched.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

DETECTOR_ENV = "WAV2LIP_FACE_DETECTOR"
DETECTOR_CHOICES = "expected auto, opencv-haar, skimage-lbp, s3fd:<checkpoint> or the path of an S3FD checkpoint"
BUILTIN = ("auto", "opencv-haar", "skimage-lbp")


@dataclass(frozen=True)
class Box:
    """A face box in pixels (``x2``/``y2`` exclusive) with the detector's confidence."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def scaled(self, factor: float) -> Box:
        return Box(self.x1 * factor, self.y1 * factor, self.x2 * factor, self.y2 * factor, self.score)

    def padded(self, top: float, bottom: float, left: float, right: float) -> Box:
        """Grown by fractions of its own height (top/bottom) and width (left/right)."""
        return Box(self.x1 - left * self.width, self.y1 - top * self.height,
                   self.x2 + right * self.width, self.y2 + bottom * self.height, self.score)

    def clipped_int(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Integer ``(x1, y1, x2, y2)`` inside a ``width`` x ``height`` frame."""
        x1 = int(np.clip(round(self.x1), 0, width))
        y1 = int(np.clip(round(self.y1), 0, height))
        x2 = int(np.clip(round(self.x2), x1, width))
        y2 = int(np.clip(round(self.y2), y1, height))
        return x1, y1, x2, y2

    def as_list(self) -> list[float]:
        return [round(self.x1, 2), round(self.y1, 2), round(self.x2, 2), round(self.y2, 2)]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``frame`` shrunk so its longer side is at most ``max_side`` (0 = as is), and the factor back."""
    height, width = frame.shape[:2]
    longest = max(height, width)
    if not max_side or longest <= max_side:
        return frame, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    from PIL import Image

    small = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
    return small, width / size[0]


def _gray(frame: np.ndarray) -> np.ndarray:
    rgb = frame.astype(np.float32)
    return np.clip(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- cascades (no download)


class OpenCVHaarDetector:
    """OpenCV's frontal-face Haar cascade from the wheel's own data folder."""

    name = "opencv-haar"
    # Haar boxes run from the brows to about the lower lip: extend down to cover the chin.
    default_padding = (0.0, 0.12, 0.0, 0.0)

    def __init__(self, *, max_side: int = 480, cascade: str = "haarcascade_frontalface_default.xml",
                 scale_factor: float = 1.1, min_neighbors: int = 5, min_size_fraction: float = 0.10):
        import cv2

        path = os.path.join(cv2.data.haarcascades, cascade)
        self._classifier = cv2.CascadeClassifier(path)
        if self._classifier.empty():
            raise RuntimeError(f"OpenCV could not load its Haar cascade {path!r} (an OpenCV 4.x wheel ships it; "
                               "OpenCV 5 wheels do not): install opencv-python-headless 4.x or use skimage-lbp")
        self._lock = threading.Lock()  # a CascadeClassifier is not safe to share between threads
        self.max_side, self.min_size_fraction = max_side, min_size_fraction
        self.options = {"scaleFactor": scale_factor, "minNeighbors": min_neighbors}  # for detectMultiScale3

    def detect(self, frame: np.ndarray) -> list[Box]:
        import cv2

        small, back = _downscale(frame, self.max_side)
        gray = cv2.equalizeHist(_gray(small))
        side = max(24, int(min(gray.shape) * self.min_size_fraction))
        with self._lock:
            found, _, weights = self._classifier.detectMultiScale3(
                gray, minSize=(side, side), outputRejectLevels=True, **self.options)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        return [Box(float(x), float(y), float(x + w), float(y + h), float(weights[i]) if i < len(weights) else 1.0
                    ).scaled(back) for i, (x, y, w, h) in enumerate(np.asarray(found).reshape(-1, 4))]


class SkimageLBPDetector:
    """scikit-image's bundled LBP frontal-face cascade (``skimage.feature.Cascade``)."""

    name = "skimage-lbp"
    default_padding = (0.0, 0.15, 0.0, 0.0)

    def __init__(self, *, max_side: int = 480, scale_factor: float = 1.2, step_ratio: float = 1.0,
                 min_size_fraction: float = 0.12, min_neighbor_number: int = 4, intersection_score_threshold=0.5):
        from skimage import data
        from skimage.feature import Cascade

        self._cascade = Cascade(data.lbp_frontal_face_cascade_filename())
        self._lock = threading.Lock()
        self.max_side, self.min_size_fraction = max_side, min_size_fraction
        self.options = {"scale_factor": scale_factor, "step_ratio": step_ratio,  # for detect_multi_scale
                        "min_neighbor_number": min_neighbor_number,
                        "intersection_score_threshold": intersection_score_threshold}

    def detect(self, frame: np.ndarray) -> list[Box]:
        small, back = _downscale(frame, self.max_side)
        shortest = min(small.shape[:2])
        side = max(24, int(shortest * self.min_size_fraction))
        with self._lock:
            found = self._cascade.detect_multi_scale(
                img=small, min_size=(side, side), max_size=(shortest, shortest), **self.options)
        return [Box(float(d["c"]), float(d["r"]), float(d["c"] + d["width"]), float(d["r"] + d["height"])).scaled(back)
                for d in found]


# ---------------------------------------------------------------------- S3FD (optional weights)


@functools.cache
def _s3fd_class():
    """The S3FD network class (defined on first use so that importing this module needs no torch)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class L2Norm(nn.Module):
        def __init__(self, channels: int, scale: float):
            super().__init__()
            self.weight = nn.Parameter(torch.full((channels,), float(scale)))

        def forward(self, x):
            norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
            return x / norm * self.weight.view(1, -1, 1, 1)

    class S3FD(nn.Module):
        """VGG-16 trunk, fc6/fc7 as convolutions, two extra stages, six detection heads (key names as published)."""

        VGG = (("conv1", 3, 64, 2), ("conv2", 64, 128, 2), ("conv3", 128, 256, 3), ("conv4", 256, 512, 3),
               ("conv5", 512, 512, 3))

        def __init__(self):
            super().__init__()
            for stage, cin, cout, count in self.VGG:
                for index in range(1, count + 1):
                    setattr(self, f"{stage}_{index}", nn.Conv2d(cin if index == 1 else cout, cout, 3, 1, 1))
            self.fc6 = nn.Conv2d(512, 1024, kernel_size=3, stride=1, padding=3)
            self.fc7 = nn.Conv2d(1024, 1024, kernel_size=1, stride=1, padding=0)
            self.conv6_1 = nn.Conv2d(1024, 256, kernel_size=1, stride=1, padding=0)
            self.conv6_2 = nn.Conv2d(256, 512, kernel_size=3, stride=2, padding=1)
            self.conv7_1 = nn.Conv2d(512, 128, kernel_size=1, stride=1, padding=0)
            self.conv7_2 = nn.Conv2d(128, 256, kernel_size=3, stride=2, padding=1)
            self.conv3_3_norm = L2Norm(256, 10)
            self.conv4_3_norm = L2Norm(512, 8)
            self.conv5_3_norm = L2Norm(512, 5)
            heads = (("conv3_3_norm", 256, 4), ("conv4_3_norm", 512, 2), ("conv5_3_norm", 512, 2),
                     ("fc7", 1024, 2), ("conv6_2", 512, 2), ("conv7_2", 256, 2))
            for name, channels, classes in heads:
                setattr(self, f"{name}_mbox_conf", nn.Conv2d(channels, classes, 3, 1, 1))
                setattr(self, f"{name}_mbox_loc", nn.Conv2d(channels, 4, 3, 1, 1))
            self.heads = tuple(name for name, _, _ in heads)

        def forward(self, x):
            taps = {}
            h = x
            for stage, _, _, count in self.VGG:
                for index in range(1, count + 1):
                    h = F.relu(getattr(self, f"{stage}_{index}")(h))
                taps[stage] = h
                h = F.max_pool2d(h, 2, 2)
            h = F.relu(self.fc7(F.relu(self.fc6(h))))
            taps["fc7"] = h
            h = F.relu(self.conv6_2(F.relu(self.conv6_1(h))))
            taps["conv6_2"] = h
            h = F.relu(self.conv7_2(F.relu(self.conv7_1(h))))
            taps["conv7_2"] = h
            features = [self.conv3_3_norm(taps["conv3"]), self.conv4_3_norm(taps["conv4"]),
                        self.conv5_3_norm(taps["conv5"]), taps["fc7"], taps["conv6_2"], taps["conv7_2"]]
            outputs = []
            for name, feature in zip(self.heads, features):
                conf = getattr(self, f"{name}_mbox_conf")(feature)
                if conf.shape[1] == 4:  # max-out background: three background scores, one face score
                    conf = torch.cat([conf[:, :3].max(dim=1, keepdim=True).values, conf[:, 3:]], dim=1)
                outputs.append((conf, getattr(self, f"{name}_mbox_loc")(feature)))
            return outputs

    return S3FD


def build_s3fd():
    """An S3FD network with fresh (random) weights."""
    return _s3fd_class()()


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    while order.size:
        first = order[0]
        keep.append(int(first))
        xx1 = np.maximum(boxes[first, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[first, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[first, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[first, 3], boxes[order[1:], 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        overlap = inter / np.maximum(areas[first] + areas[order[1:]] - inter, 1e-9)
        order = order[1:][overlap <= threshold]
    return keep


class S3FDDetector:
    """S3FD from a checkpoint file (the face_alignment / Wav2Lip ``s3fd.pth``)."""

    name = "s3fd"
    default_padding = (0.0, 0.08, 0.0, 0.0)  # the official scripts add 10 px below the box at 96-ish px faces
    MEANS_BGR = (104.0, 117.0, 123.0)

    def __init__(self, checkpoint: str | Path, *, device: str = "cpu", max_side: int = 640,
                 candidate_threshold: float = 0.05, nms_threshold: float = 0.3, score_threshold: float = 0.5):
        import torch

        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ValueError(f"{DETECTOR_ENV}: the S3FD checkpoint {str(path)!r} does not exist")
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{DETECTOR_ENV}: cannot read {str(path)!r} as a torch checkpoint: {error}") from error
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = {(k.removeprefix("module.")): v for k, v in state.items()}
        net = build_s3fd()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{DETECTOR_ENV}: {str(path)!r} is not an S3FD checkpoint: {error}") from error
        self.net = net.eval().to(device)
        self.device = device
        self.path = str(path)
        self.max_side = max_side
        self.candidate_threshold = candidate_threshold
        self.nms_threshold = nms_threshold
        self.score_threshold = score_threshold

    def detect(self, frame: np.ndarray) -> list[Box]:
        import torch

        small, back = _downscale(frame, self.max_side)
        bgr = small[..., ::-1].astype(np.float32) - np.asarray(self.MEANS_BGR, dtype=np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None].to(self.device)
        with torch.no_grad():
            outputs = self.net(tensor)
        boxes, scores = [], []
        for level, (conf, loc) in enumerate(outputs):
            prob = torch.softmax(conf.float(), dim=1)[0, 1].cpu().numpy()
            ys, xs = np.nonzero(prob > self.candidate_threshold)
            if not len(ys):
                continue
            stride = 2 ** (level + 2)
            reg = loc[0].float().cpu().numpy()[:, ys, xs].T  # (n, 4)
            centre = np.stack([stride / 2 + xs * stride, stride / 2 + ys * stride], axis=1).astype(np.float64)
            size = 4.0 * stride
            xy = centre + reg[:, :2] * 0.1 * size
            wh = size * np.exp(reg[:, 2:] * 0.2)
            boxes.append(np.concatenate([xy - wh / 2, xy + wh / 2], axis=1))
            scores.append(prob[ys, xs])
        if not boxes:
            return []
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
        keep = _nms(all_boxes, all_scores, self.nms_threshold)
        return [Box(*map(float, all_boxes[i]), score=float(all_scores[i])).scaled(back)
                for i in keep if all_scores[i] > self.score_threshold]


# ---------------------------------------------------------------------- choosing a detector


def available_builtin() -> str:
    """The weight-free detector ``auto`` picks: ``opencv-haar``, else ``skimage-lbp``."""
    from importlib.util import find_spec

    if find_spec("cv2") is not None:
        return "opencv-haar"
    if find_spec("skimage") is not None:
        return "skimage-lbp"
    raise RuntimeError("no face detector is installed: the Wav2Lip lipsync needs opencv-python-headless 4.x "
                       f"(Haar cascades) or scikit-image (LBP cascade), or {DETECTOR_ENV}=s3fd:<checkpoint>")


def detector_kind(spec: str) -> tuple[str, str | None]:
    """``(kind, checkpoint)`` for a detector setting: ``auto``/builtin names, or ``s3fd`` with its path."""
    value = (spec or "").strip()
    if value.lower() in ("", "auto"):
        return "auto", None
    if value.lower() in BUILTIN:
        return value.lower(), None
    if value.lower().startswith("s3fd:"):
        return "s3fd", value[5:].strip()
    if value.endswith((".pth", ".pt", ".bin")) or "/" in value or os.sep in value:
        return "s3fd", value
    raise ValueError(f"{DETECTOR_ENV}={spec!r}: {DETECTOR_CHOICES}")


def make_detector(spec: str = "auto", *, device: str = "cpu", max_side: int = 480) -> Any:
    """The detector a setting names (see the module docstring)."""
    kind, checkpoint = detector_kind(spec)
    if kind == "auto":
        kind = available_builtin()
    if kind == "opencv-haar":
        return OpenCVHaarDetector(max_side=max_side)
    if kind == "skimage-lbp":
        return SkimageLBPDetector(max_side=min(max_side, 480) if max_side else 480)
    return S3FDDetector(checkpoint or "", device=device, max_side=max_side)


# ---------------------------------------------------------------------- tracking over time


def choose_faces(detections: Sequence[Sequence[Box]], *, min_iou: float = 0.3) -> list[Box | None]:
    """One box per frame: the one overlapping the previous choice most, else the largest."""
    chosen: list[Box | None] = []
    previous: Box | None = None
    for boxes in detections:
        if not boxes:
            chosen.append(None)
            continue
        pick = None
        if previous is not None:
            best = max(boxes, key=lambda b: iou(b, previous))
            if iou(best, previous) >= min_iou:
                pick = best
        if pick is None:
            pick = max(boxes, key=lambda b: b.area)
        chosen.append(pick)
        previous = pick
    return chosen


def drop_outliers(boxes: Sequence[Box | None], *, reach: int = 3, agree_iou: float = 0.5,
                  reject_iou: float = 0.2) -> list[Box | None]:
    """Remove a box that disagrees with the nearest boxes before and after it (within ``reach`` frames)
    while those two agree with each other: a one-frame false positive."""
    out = list(boxes)
    known = [i for i, b in enumerate(boxes) if b is not None]
    for k in range(1, len(known) - 1):
        before, here, after = known[k - 1], known[k], known[k + 1]
        if here - before > reach or after - here > reach:
            continue
        a, b, c = boxes[before], boxes[here], boxes[after]
        if iou(a, c) >= agree_iou and iou(b, a) < reject_iou and iou(b, c) < reject_iou:
            out[here] = None
    return out


def fill_gaps(boxes: Sequence[Box | None], max_gap: int) -> list[Box | None]:
    """Interpolate runs of at most ``max_gap`` missing frames between two boxes (not at the ends)."""
    out = list(boxes)
    known = [i for i, b in enumerate(boxes) if b is not None]
    for left, right in itertools.pairwise(known):
        gap = right - left - 1
        if 0 < gap <= max_gap:
            a, b = boxes[left], boxes[right]
            for j in range(1, gap + 1):
                t = j / (gap + 1)
                out[left + j] = Box(a.x1 + (b.x1 - a.x1) * t, a.y1 + (b.y1 - a.y1) * t, a.x2 + (b.x2 - a.x2) * t,
                                    a.y2 + (b.y2 - a.y2) * t, score=min(a.score, b.score))
    return out


def box_runs(boxes: Sequence[Box | None]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each run of consecutive frames that have a box (``end`` exclusive)."""
    start = None
    for index, box in enumerate([*boxes, None]):
        if box is not None and start is None:
            start = index
        elif box is None and start is not None:
            yield start, index
            start = None


def smooth_boxes(boxes: Sequence[Box | None], window: int) -> list[Box | None]:
    """Centred moving average of the coordinates within each run of consecutive boxes."""
    out = list(boxes)
    if window <= 1:
        return out
    half = window // 2
    for start, end in box_runs(boxes):
        coords = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes[start:end]], dtype=np.float64)
        cumulative = np.concatenate([np.zeros((1, 4)), np.cumsum(coords, axis=0)])
        for k in range(end - start):
            lo, hi = max(0, k - half), min(end - start, k + half + 1)
            mean = (cumulative[hi] - cumulative[lo]) / (hi - lo)
            out[start + k] = replace(boxes[start + k], x1=mean[0], y1=mean[1], x2=mean[2], y2=mean[3])
    return out


def drop_short_runs(filled: Sequence[Box | None], raw: Sequence[Box | None], min_detections: int) -> list[Box | None]:
    """Remove runs of boxes backed by fewer than ``min_detections`` real detections (a face on screen is
    detected in frame after frame; a lone hit in a faceless stretch is a false positive)."""
    out = list(filled)
    for start, end in box_runs(filled):
        if sum(1 for k in range(start, end) if raw[k] is not None) < min_detections:
            out[start:end] = [None] * (end - start)
    return out


def track_faces(detections: Sequence[Sequence[Box]], *, smooth_window: int = 5, max_gap: int = 3,
                min_detections: int = 3) -> list[Box | None]:
    """Per-frame detections -> one smoothed box (or None: no face) per frame.

    A run of boxes needs ``min_detections`` real detections (fewer when the whole span is shorter).
    """
    raw = drop_outliers(choose_faces(detections), reach=max_gap + 1)
    filled = drop_short_runs(fill_gaps(raw, max_gap), raw, min(min_detections, len(detections)))
    return smooth_boxes(filled, smooth_window)
