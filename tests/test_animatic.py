"""The embedded clip renderer: frames made as YUV 4:2:0 must decode to the keyframes' colours."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sparkle_motion_dagster.media.ffmpeg import FrameEncoder, count_video_frames, iter_video_frames
from sparkle_motion_dagster.resources.clips import ClipRequest
from sparkle_motion_dagster.resources.clips.animatic import OVERSCAN, AnimaticClips, animatic_frames, rgb_to_yuv420

WIDTH, HEIGHT, FPS = 320, 180, 12.0


def colour_bars(colours: list[tuple[int, int, int]]) -> Image.Image:
    """Vertical bars wide enough that the pan and chroma subsampling stay inside each bar's middle."""
    bars = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    step = WIDTH // len(colours)
    for index, colour in enumerate(colours):
        bars[:, index * step:(index + 1) * step] = colour
    return Image.fromarray(bars)


def bar_centres(frame: np.ndarray, count: int) -> list[np.ndarray]:
    step = WIDTH // count
    return [frame[HEIGHT // 3:2 * HEIGHT // 3, i * step + step // 3:i * step + 2 * step // 3].reshape(-1, 3).mean(0)
            for i in range(count)]


START = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
END = [(0, 0, 0), (255, 255, 0), (128, 128, 128), (0, 200, 255)]


@pytest.fixture
def clip(tmp_path):
    start, end = tmp_path / "start.png", tmp_path / "end.png"
    colour_bars(START).save(start)
    colour_bars(END).save(end)
    request = ClipRequest(shot_id="shot_a", start_image=start, end_image=end, frames=30, fps=FPS,
                          width=WIDTH, height=HEIGHT, seed=7, motion_prompt="slow push", prompt="bars")
    out = tmp_path / "shot_a.mp4"
    meta = AnimaticClips().render(request, out)
    return out, meta


def test_clip_has_the_requested_frames(clip):
    out, meta = clip
    assert meta["frames"] == 30
    assert count_video_frames(out) == 30


def test_first_and_last_frames_decode_to_the_keyframe_colours(clip):
    out, _ = clip
    frames = list(iter_video_frames(out, WIDTH, HEIGHT))
    for frame, colours in ((frames[0], START), (frames[-1], END)):
        for measured, expected in zip(bar_centres(frame, len(colours)), colours):
            assert np.abs(measured - np.array(expected)).max() < 6, (measured, expected)


def test_the_crossfade_passes_through_a_mix_of_both_keyframes(clip):
    out, _ = clip
    middle = list(iter_video_frames(out, WIDTH, HEIGHT))[15]
    red_to_black = bar_centres(middle, len(START))[0]
    assert 60 < red_to_black[0] < 200 and red_to_black[1] < 10


def test_yuv_frames_have_the_planar_size_and_last_frame_is_the_centred_end_keyframe():
    start, end = colour_bars(START), colour_bars(END)
    frames = list(animatic_frames(start, end, frames=5, width=WIDTH, height=HEIGHT, seed=1, motion_prompt="pan"))
    assert all(len(f) == WIDTH * HEIGHT * 3 // 2 for f in frames)
    big = (int(round(WIDTH * OVERSCAN)) // 2 * 2, int(round(HEIGHT * OVERSCAN)) // 2 * 2)
    y, u, v = rgb_to_yuv420(np.asarray(end.resize(big, Image.Resampling.BICUBIC)))
    x0, y0 = (big[0] - WIDTH) // 2 // 2 * 2, (big[1] - HEIGHT) // 2 // 2 * 2
    expected = np.concatenate([y[y0:y0 + HEIGHT, x0:x0 + WIDTH].ravel(),
                               u[y0 // 2:(y0 + HEIGHT) // 2, x0 // 2:(x0 + WIDTH) // 2].ravel(),
                               v[y0 // 2:(y0 + HEIGHT) // 2, x0 // 2:(x0 + WIDTH) // 2].ravel()])
    assert frames[-1] == expected.tobytes()


def test_odd_sizes_are_refused_with_the_reason():
    image = colour_bars(START)
    with pytest.raises(ValueError, match="even"):
        next(animatic_frames(image, image, frames=2, width=321, height=180, seed=1, motion_prompt=""))


def test_frame_encoder_checks_the_frame_size_of_its_pixel_format(tmp_path):
    with pytest.raises(ValueError, match="pix_fmt"):
        FrameEncoder(tmp_path / "x.mp4", width=4, height=4, fps=1, pix_fmt="nv12")
    with pytest.raises(ValueError, match="fps"):
        FrameEncoder(tmp_path / "x.mp4", width=4, height=4, fps=0, pix_fmt="yuv420p")
    with FrameEncoder(tmp_path / "ok.mp4", width=64, height=64, fps=4, pix_fmt="yuv420p") as encoder:
        with pytest.raises(ValueError, match="6144"):
            encoder.write(bytes(64 * 64 * 3))
        encoder.write(bytes([16]) * (64 * 64) + bytes([128]) * (64 * 64 // 2))
    assert count_video_frames(tmp_path / "ok.mp4") == 1


@pytest.mark.parametrize("size", [(1280, 720), (80, 64), (1920, 1080), (250, 142)])
@pytest.mark.parametrize("direction", [(1, 1), (-1, -1), (1, -1), (-1, 1)])
def test_the_widest_pan_stays_inside_the_overscan(monkeypatch, direction, size):
    # Without the holds, the blend reads both layers at every offset of the pan.
    import sparkle_motion_dagster.resources.clips.animatic as animatic

    monkeypatch.setattr(animatic, "HOLD_FRACTION", 0.0)
    monkeypatch.setattr(animatic, "_pan_vector", lambda seed, prompt, mx, my: (direction[0] * mx, direction[1] * my))
    width, height = size
    image = Image.new("RGB", size, (40, 90, 160))
    frames = list(animatic.animatic_frames(image, image, frames=60, width=width, height=height, seed=1,
                                           motion_prompt=""))
    assert len(frames) == 60 and all(len(f) == width * height * 3 // 2 for f in frames)


def test_the_first_frame_shows_the_whole_keyframe_caption():
    """The pan starts from an enlarged, centred crop: the storyboard's caption must survive it."""
    from sparkle_motion_dagster.resources.keyframes.storyboard import render_storyboard

    prompt = "Two friends walk a coastal path at dawn, the long caption wrapping onto a second line here"
    keyframe = render_storyboard(prompt, seed=1, width=WIDTH, height=HEIGHT, label="frame_000")
    luma = rgb_to_yuv420(np.asarray(keyframe))[0]
    first = np.frombuffer(next(animatic_frames(keyframe, keyframe, frames=2, width=WIDTH, height=HEIGHT, seed=3,
                                               motion_prompt="pan")), np.uint8)[:WIDTH * HEIGHT]
    first = first.reshape(HEIGHT, WIDTH)
    top = int(HEIGHT * 0.72)  # the caption panel (two lines, inside the title-safe area)
    caption = slice(top, HEIGHT)
    text = np.argwhere(luma[caption] > 200)  # white letters on the dark caption panel
    assert len(text) > 50
    big_w, big_h = int(round(WIDTH * OVERSCAN)) // 2 * 2, int(round(HEIGHT * OVERSCAN)) // 2 * 2
    cx, cy = (big_w - WIDTH) // 4 * 2, (big_h - HEIGHT) // 4 * 2
    rows = (text[:, 0] + top) * big_h / HEIGHT - cy  # where each letter pixel lands in the frame
    cols = text[:, 1] * big_w / WIDTH - cx
    assert rows.min() >= 0 and rows.max() < HEIGHT - 1 and cols.min() >= 1 and cols.max() < WIDTH - 1
    shown = np.argwhere(first[caption] > 200)
    assert len(shown) > 0.5 * len(text)  # the letters are there, enlarged (and softened)
    assert shown[:, 1].min() > 0 and shown[:, 0].max() + top < HEIGHT - 1  # none touch an edge
