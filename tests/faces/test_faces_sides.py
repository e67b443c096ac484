"""Aff-Wild2's <video>_left / <video>_right tracks: each keeps its own side's person."""

from __future__ import annotations

import numpy as np
import pytest

from affectflow.faces.registry import Detection
from affectflow.faces.tracks import Track, choose_main_track


def track(x: float, size: float, frames: int = 10) -> Track:
    box = np.array([x, 50.0, x + size, 50.0 + size])
    return Track({k: Detection(box, 0.99, np.zeros((5, 2))) for k in range(frames)})


def test_side_picks_the_leftmost_and_rightmost_substantial_face():
    # a large face on the right, a slightly smaller one on the left, a tiny one far left
    tracks = [track(400, 100), track(100, 90), track(5, 20)]
    largest, _ = choose_main_track(tracks)
    left, left_choice = choose_main_track(tracks, side="left")
    right, _ = choose_main_track(tracks, side="right")
    assert largest is tracks[0] and right is tracks[0]
    assert left is tracks[1]  # not the tiny background face at x=5
    assert left_choice.main_track == 1 and left_choice.runner_up_area == pytest.approx(100 * 100 * 10)


def test_unknown_side_is_refused():
    with pytest.raises(ValueError, match="side"):
        choose_main_track([track(0, 10)], side="middle")
