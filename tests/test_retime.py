"""Retiming generated frames to the film's rate: motion-compensated by default, blending on request."""

import numpy as np
import pytest

from sparkle_motion_dagster.media.retime import blend_frames, motion_frames, retime


def moving_bar(count: int, width: int = 96, height: int = 48, step: int = 4) -> np.ndarray:
    """A white bar on a textured background moving ``step`` pixels right per frame."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], count, axis=0)
    for index in range(count):
        x = 8 + index * step
        frames[index, 12:36, x:x + 12] = 255
    return frames


@pytest.mark.parametrize(("generated", "count"), [(17, 25), (17, 24), (9, 13), (33, 49), (5, 3)])
def test_motion_retime_gives_exactly_count_frames_with_exact_ends(generated, count):
    video = moving_bar(generated)
    frames = list(retime(video, count, "motion"))
    assert len(frames) == count
    assert all(frame.shape == video[0].shape and frame.dtype == np.uint8 for frame in frames)
    assert np.array_equal(frames[0], video[0]) and np.array_equal(frames[-1], video[-1])


@pytest.mark.parametrize("workers", [1, 3])  # one ffmpeg, or the clip cut where the frame grids meet
def test_motion_retime_differs_from_a_blend_of_neighbours_on_moving_edges(workers):
    video = moving_bar(17)  # 16 fps over one second, to 24 fps
    motion = list(motion_frames(video, 25, workers=workers))
    assert len(motion) == 25 and np.array_equal(motion[-1], video[-1])
    blended = list(blend_frames(video, 25))
    between = [i for i in range(25) if (i * 16 / 24) % 1]  # output frames between two generated ones
    assert between
    for index in between:
        assert np.abs(motion[index].astype(int) - blended[index].astype(int)).max() > 32, index
    # A blend shows the bar twice, faded (ghosting); motion compensation draws it whole: more pixels at full white.
    ghost_free = sum(int((motion[i][..., 0] == 255).sum()) for i in between)
    ghosted = sum(int((blended[i][..., 0] == 255).sum()) for i in between)
    assert ghost_free > ghosted


def test_blending_stays_a_choice_and_an_unknown_method_is_refused():
    video = moving_bar(5)
    assert all(np.array_equal(a, b) for a, b in zip(retime(video, 7, "blend"), blend_frames(video, 7)))
    with pytest.raises(ValueError, match="retime method 'rife'.*motion, blend"):
        retime(video, 7, "rife")
