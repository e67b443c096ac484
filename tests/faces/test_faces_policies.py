"""Alignment, main-face tracks, missing-face policies, temporal sampling, masking, the dlib
detector and the stage options (fallback, detect every k-th frame, two-pass decoding)."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pandas as pd
import pytest

from affectflow.faces import create_detector
from affectflow.faces.align import TEMPLATE_112, align_crop, similarity_matrix, template, transform_points
from affectflow.faces.clip import process_clip
from affectflow.faces.crop import decode_jpeg
from affectflow.faces.detectors.dlib_hog import five_from_68
from affectflow.faces.fill import fill_missing, gap_fill_mask, nearest_valid, smooth
from affectflow.faces.masking import AUGMENTED_AUS, mask_face, masked_labels
from affectflow.faces.options import FaceOptions
from affectflow.faces.registry import Detection, DetectorBase
from affectflow.faces.sampling import max_frames, sample_frames, segment_bounds, uniform_indices
from affectflow.faces.tracks import box_iou, choose_main_track, link_tracks
from affectflow.media import probe_media
from affectflow.runtime.ffmpeg import ffmpeg_exe

from conftest import REPO

ASTRONAUT = REPO / "resources" / "demo" / "astronaut.png"
FACE = np.array([175, 75, 270, 180], dtype=np.float64)


def rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


# -- alignment ------------------------------------------------------------------------------


def test_similarity_matrix_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    scale, rot, shift = 0.7, rotation(23), np.array([12.0, -4.0])
    dst = scale * src @ rot.T + shift
    matrix = similarity_matrix(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-7)
    # same answer as OpenCV's estimator on exact data
    cv_matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    np.testing.assert_allclose(matrix, cv_matrix, atol=1e-4)


def test_similarity_matrix_rejects_degenerate_points():
    with pytest.raises(ValueError, match="one point"):
        similarity_matrix(np.ones((5, 2)), TEMPLATE_112)
    with pytest.raises(ValueError, match="shape"):
        similarity_matrix(np.ones((5, 2)), np.ones((4, 2)))


def test_align_crop_puts_landmarks_on_the_template():
    # five bright dots placed by the inverse of a rotated, scaled, shifted template
    frame = np.zeros((300, 400, 3), np.uint8)
    points = (TEMPLATE_112 - 56) @ rotation(-30).T * 1.8 + np.array([220, 140])
    for x, y in points:
        cv2.circle(frame, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    crop, matrix = align_crop(frame, points, size=112)
    assert crop.shape == (112, 112, 3)
    np.testing.assert_allclose(transform_points(matrix, points), TEMPLATE_112, atol=1e-6)
    for x, y in TEMPLATE_112:  # each dot lands where the template says
        assert crop[int(round(y)), int(round(x))].min() > 150
    assert crop[5, 5].max() == 0
    np.testing.assert_allclose(template(224), TEMPLATE_112 * 2)


def test_five_from_68_are_eye_centres_nose_tip_mouth_corners():
    pts = np.arange(136, dtype=np.float32).reshape(68, 2)
    five = five_from_68(pts)
    np.testing.assert_allclose(five[0], pts[36:42].mean(0))
    np.testing.assert_allclose(five[1], pts[42:48].mean(0))
    np.testing.assert_allclose(five[2:], pts[[30, 48, 54]])


# -- dlib -----------------------------------------------------------------------------------


def test_dlib_finds_the_astronaut_with_68_landmarks():
    image = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    detector = create_detector("dlib")
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    faces, none = detector.detect_all(np.stack([image, cv2.resize(noise, (512, 512))]))
    assert none == []
    (det,) = faces
    assert box_iou(det.box, FACE) >= 0.5
    assert det.landmarks68.shape == (68, 2) and det.landmarks.shape == (5, 2)
    lm = det.landmarks
    assert lm[0, 0] < lm[1, 0] and max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])
    # agrees with MTCNN's eyes within a few pixels
    mtcnn = create_detector("mtcnn", min_face_size=40, device="cpu").detect(image[None])[0]
    assert np.abs(mtcnn.landmarks[:2] - lm[:2]).max() < 8
    with pytest.raises(ValueError, match="upsample"):
        create_detector("dlib", upsample=-1)


# -- tracks ---------------------------------------------------------------------------------


def det(x, y, side, score=0.99) -> Detection:
    box = np.array([x, y, x + side, y + side], np.float32)
    return Detection(box, score, np.zeros((5, 2), np.float32))


def test_main_track_is_largest_and_most_stable_not_largest_per_frame():
    # A: a big face for 30 of 100 frames; B: a smaller face in every frame (more total area)
    detections = {f: [det(300, 50, 80)] + ([det(20, 20, 100)] if f < 30 else []) for f in range(100)}
    tracks = link_tracks(detections, max_gap=3)
    assert len(tracks) == 2
    main, choice = choose_main_track(tracks)
    assert len(main.detections) == 100
    assert all(d.box[0] == 300 for d in main.detections.values())  # never jumps to A
    assert choice.n_tracks == 2 and choice.main_area == pytest.approx(100 * 80 * 80)
    assert choice.runner_up_area == pytest.approx(30 * 100 * 100)


def test_tracks_survive_short_gaps_and_split_on_long_ones():
    detections = {f: [det(100 + f, 100, 60)] for f in [0, 1, 2, 6, 7, 30, 31]}
    tracks = link_tracks(detections, max_gap=5)
    assert sorted(sorted(t.detections) for t in tracks) == [[0, 1, 2, 6, 7], [30, 31]]
    assert choose_main_track([])[1].main_track == -1


# -- missing faces --------------------------------------------------------------------------


def test_gap_fill_mask_respects_max_gap():
    valid = np.ones(40, bool)
    valid[5:17] = False  # a gap of 12: filled
    valid[20:33] = False  # a gap of 13: not filled
    valid[:2] = False  # the start: nothing before, not filled
    mask = gap_fill_mask(valid, max_gap=12)
    assert mask[5:17].all() and not mask[20:33].any() and not mask[:2].any()
    assert mask.sum() == 12


def test_interpolate_policy_is_linear_then_smoothed():
    n = 20
    boxes = np.stack([np.arange(n) * 2.0, np.zeros(n), np.arange(n) * 2.0 + 10, np.full(n, 10.0)], 1)
    found = np.ones(n, bool)
    found[6:9] = False
    raw = boxes.copy()
    raw[~found] = np.nan
    out, valid, labels, source = fill_missing({"boxes": raw}, found, policy="interpolate", max_gap=12)
    np.testing.assert_allclose(out["boxes"], boxes)  # linear motion is recovered exactly
    assert valid.all() and list(labels[5:10]) == ["none", "interpolated", "interpolated", "interpolated", "none"]
    np.testing.assert_array_equal(source, np.arange(n))
    jitter = boxes + np.random.default_rng(0).normal(0, 1, boxes.shape)
    smoothed = smooth(jitter, np.ones(n, bool), window=5)
    expected = pd.DataFrame(jitter).rolling(5, center=True).mean().to_numpy()
    np.testing.assert_allclose(smoothed[2:-2], expected[2:-2])
    np.testing.assert_allclose(smoothed[[0, -1]], jitter[[0, -1]])


def test_drop_and_nearest_policies():
    found = np.array([0, 1, 1, 0, 0, 0, 1, 0], bool)
    values = np.where(found, np.arange(8.0), np.nan)[:, None]
    out, valid, labels, source = fill_missing({"v": values}, found, policy="drop")
    assert (valid == found).all() and list(labels) == ["dropped" if not f else "none" for f in found]
    out, valid, labels, source = fill_missing({"v": values}, found, policy="nearest")
    assert valid.all()
    # nearest valid frame, the earlier on a tie (frame 4 is 2 from both 2 and 6)
    brute = [min(np.flatnonzero(found), key=lambda j: (abs(j - i), j)) for i in range(8)]
    np.testing.assert_array_equal(source, brute)
    np.testing.assert_array_equal(nearest_valid(found), brute)
    np.testing.assert_allclose(out["v"][:, 0], np.array(brute, float))
    assert list(labels) == ["nearest", "none", "none", "nearest", "nearest", "nearest", "none", "nearest"]
    assert (nearest_valid(np.zeros(3, bool)) == -1).all()
    with pytest.raises(ValueError, match="drop, interpolate, nearest"):
        fill_missing({"v": values}, found, policy="guess")


# -- sampling -------------------------------------------------------------------------------


def test_uniform_sampling():
    idx = uniform_indices(1000, 32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 999 and (np.diff(idx) > 0).all()
    assert np.abs(np.diff(idx) - 999 / 31).max() <= 1
    short = uniform_indices(10, 32)  # fewer frames than T: frames repeat, T kept
    assert len(short) == 32 and set(short) == set(range(10))
    assert len(uniform_indices(0, 32)) == 0


def test_segments_and_cut():
    bounds = segment_bounds(400, segment_length=150, stride=150)
    np.testing.assert_array_equal(bounds, [[0, 150], [150, 300], [300, 400]])
    overlapping = segment_bounds(300, segment_length=150, stride=75)
    np.testing.assert_array_equal(overlapping, [[0, 150], [75, 225], [150, 300]])
    idx, segs = sample_frames(400, mode="segments", segment_length=150, stride=150)
    assert len(idx) == 400 and segs.shape == (3, 2)
    assert max_frames(12, 30) == 360 and max_frames(None, 30) is None
    with pytest.raises(ValueError, match="all, uniform, segments"):
        sample_frames(10, mode="random")


# -- masking (paper 004) --------------------------------------------------------------------


def test_mask_upper_and_lower_face():
    crop = np.full((112, 112, 3), 200, np.uint8)
    upper = mask_face(crop, TEMPLATE_112, region="upper")
    nose_y = TEMPLATE_112[2, 1]
    assert (upper.image[: int(nose_y) - 1] == 0).all() and (upper.image[int(nose_y) + 2 :] == 200).all()
    assert "AU1" in upper.hidden_aus and "AU12" not in upper.hidden_aus
    lower = mask_face(crop, TEMPLATE_112, region="lower")
    assert (lower.image[int(nose_y) + 2 :] == 0).all() and (lower.image[: int(nose_y) - 1] == 200).all()
    assert {"AU12", "AU25", "AU26"} <= set(lower.hidden_aus) and "AU4" not in lower.hidden_aus
    assert (crop == 200).all()  # input untouched
    # a face turned by 90 degrees: the mask follows the face, not the image rows
    turned = (TEMPLATE_112 - 56) @ rotation(90).T + 56
    side = mask_face(crop, turned, region="upper")
    eyes_x = turned[:2, 0].mean()
    mouth_x = turned[3:, 0].mean()
    assert side.image[56, int(round(eyes_x))].max() == 0 and side.image[56, int(round(mouth_x))].max() == 200


def test_masked_labels_zero_hidden_aus_only():
    aus = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]
    labels = np.ones((3, 12), np.int64)
    hidden = mask_face(np.zeros((112, 112, 3), np.uint8), TEMPLATE_112, region="lower", au_names=aus).hidden_aus
    out = masked_labels(labels, aus, hidden)
    assert out[:, :5].sum() == 15 and out[:, 5:].sum() == 0
    assert labels.sum() == 36
    assert set(AUGMENTED_AUS) >= {"AU1", "AU12", "AU26"}


# -- stage options --------------------------------------------------------------------------


class SquareDetector(DetectorBase):
    """A stand-in detector: the bounding box of the bright pixels, when there are enough of them."""

    def __init__(self):
        self.frames_seen = 0

    def detect_all(self, frames):
        self.frames_seen += len(frames)
        out = []
        for frame in frames:
            ys, xs = np.nonzero(frame[..., 0] > 128)
            if len(xs) < 20:
                out.append([])
                continue
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            w, h = x2 - x1, y2 - y1
            lm = np.array([[x1 + 0.3 * w, y1 + 0.4 * h], [x1 + 0.7 * w, y1 + 0.4 * h], [x1 + 0.5 * w, y1 + 0.6 * h],
                           [x1 + 0.35 * w, y1 + 0.8 * h], [x1 + 0.65 * w, y1 + 0.8 * h]], np.float32)
            out.append([Detection(np.array([x1, y1, x2, y2], np.float32), 1.0, lm)])
        return out


class NoFace(DetectorBase):
    def detect_all(self, frames):
        return [[] for _ in frames]


N_FRAMES, SIZE = 30, 40


def square_box(i: int) -> np.ndarray:
    x = 10 + 3 * i
    return np.array([x, 40, x + SIZE, 40 + SIZE], float)


@pytest.fixture(scope="module")
def moving_square(tmp_path_factory):
    """30 frames at 25 fps of a white square moving right 3 px a frame; frames 10-12 are black."""
    frames = np.zeros((N_FRAMES, 160, 192, 3), np.uint8)
    for i in range(N_FRAMES):
        if not 10 <= i <= 12:
            x1, y1, x2, y2 = square_box(i).astype(int)
            frames[i, y1:y2, x1:x2] = 255
    path = tmp_path_factory.mktemp("square") / "square.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "192x160", "-r", "25", "-i", "pipe:", "-c:v", "libx264", "-qp", "0", "-pix_fmt",
                    "yuv444p", str(path)], input=frames.tobytes(), check=True, capture_output=True, timeout=60)
    facts = probe_media(path)
    return {"media": str(path), "has_video": True, "width": facts.width, "height": facts.height,
            "rotation": 0, "duration_s": facts.duration_s, "qc_status": "ok"}


def options(**kw) -> FaceOptions:
    return FaceOptions(**{"fps": 25, "max_side": 192, "batch_size": 8, "crop_size": 32, **kw})


def test_stage_policies_on_a_gap(moving_square):
    drop = process_clip(moving_square, SquareDetector(), options(missing="drop"))
    assert drop.qc["status"] == "ok" and drop.qc["frames"] == N_FRAMES
    valid = drop.arrays["valid"]
    assert not valid[10:13].any() and valid[:10].all() and valid[13:].all()
    assert drop.arrays["crops"][11] == b"" and np.isnan(drop.arrays["boxes"][11]).all()

    interp = process_clip(moving_square, SquareDetector(), options(missing="interpolate", max_gap=12))
    assert interp.arrays["valid"].all()
    assert [f.decode() for f in interp.arrays["fill"][9:14]] == ["none"] + ["interpolated"] * 3 + ["none"]
    for i in range(10, 13):  # the square moved linearly, so the interpolated box is where it would be
        assert box_iou(interp.arrays["boxes"][i], square_box(i)) > 0.9
    assert interp.arrays["crops"][11] != b""

    near = process_clip(moving_square, SquareDetector(), options(missing="nearest"))
    assert near.arrays["valid"].all()
    assert list(near.arrays["source_frame"][9:14]) == [9, 9, 9, 13, 13]  # 11 is 2 from both: the earlier
    assert near.arrays["crops"][10] == near.arrays["crops"][9]
    np.testing.assert_allclose(near.arrays["timestamps"], np.arange(N_FRAMES) / 25)


def test_stage_detect_every_k_tracks_between_keyframes(moving_square):
    detector = SquareDetector()
    result = process_clip(moving_square, detector, options(detect_every=3, missing="drop"))
    # every third frame, and the last one (29) so that the tail is interpolated too
    assert detector.frames_seen == len(range(0, N_FRAMES, 3)) + 1
    fill = [f.decode() for f in result.arrays["fill"]]
    for i in range(N_FRAMES):
        if 10 <= i <= 12 or i in (11, 13, 14):  # black frames, and frames between a black keyframe and the next
            continue
        assert fill[i] == ("none" if i % 3 == 0 or i == N_FRAMES - 1 else "tracked"), i
        assert box_iou(result.arrays["boxes"][i], square_box(i)) >= 0.9, i


def test_stage_two_decode_passes_give_the_same_crops(moving_square):
    one = process_clip(moving_square, SquareDetector(), options())
    two = process_clip(moving_square, SquareDetector(), options(frame_buffer_mb=0))
    assert one.qc["decode_passes"] == 1 and two.qc["decode_passes"] == 2
    assert one.arrays["crops"] == two.arrays["crops"]
    crop = decode_jpeg(one.arrays["crops"][0])
    assert crop.shape == (32, 32, 3)


def test_stage_uniform_sampling_and_segments(moving_square):
    uniform = process_clip(moving_square, SquareDetector(), options(sampling="uniform", num_frames=4))
    np.testing.assert_array_equal(uniform.arrays["frame_index"], [0, 10, 19, 29])
    assert len(uniform.arrays["crops"]) == 4 and list(uniform.arrays["valid"]) == [True, False, True, True]
    segments = process_clip(moving_square, SquareDetector(), options(sampling="segments", segment_length=8, stride=8))
    np.testing.assert_array_equal(segments.arrays["segments"], [[0, 8], [8, 16], [16, 24], [24, 30]])
    cut = process_clip(moving_square, SquareDetector(), options(max_seconds=0.4))
    assert cut.qc["frames"] == 10 and cut.qc["status"] == "ok"


def test_stage_fallback_detector_for_clips_without_any_face(moving_square):
    result = process_clip(moving_square, NoFace(), options(), fallback=SquareDetector())
    assert result.qc["status"] == "ok" and result.attrs["detector_used"] == "fallback"
    assert "fallback" in result.qc["flags"] and result.arrays["valid"].sum() == N_FRAMES - 3
    nothing = process_clip(moving_square, NoFace(), options(), fallback=NoFace())
    assert nothing.qc["status"] == "no_face" and "fallback" in nothing.qc["reason"]


def test_face_options_defaults_are_the_schemas_and_the_config_builds_them():
    from dataclasses import asdict

    from affectflow.config.faces import stage_options
    from affectflow.config.schema import with_defaults

    config = with_defaults({"dataset": {"name": "d", "task": "emi", "root": "r"}, "media": {}, "faces": {},
                            "features": {}, "train": {"runs": {"r": {"backbone": "b"}}},
                            "ensemble": {"members": ["r"]}})
    from_config = FaceOptions.from_config(config["faces"], fps=config["media"]["fps"])
    assert from_config == FaceOptions()
    assert FaceOptions().max_side == 640 and FaceOptions().missing == "drop" and FaceOptions().fps == 30
    assert isinstance(FaceOptions().fps, float)
    # the stage's options: the fields but those it takes as arguments, in field order
    options = stage_options(config["faces"], fps=config["media"]["fps"])
    assert list(options) == [k for k in asdict(FaceOptions()) if k not in ("fps", "max_side", "batch_size",
                                                                             "crop_size")]
    config["faces"].update(margin=0.3, missing={"policy": "interpolate", "max_gap": 4, "smooth": 5},
                           fallback={"detector": "dlib", "params": {"upsample": 1}})
    opts = FaceOptions.from_config(config["faces"], fps=25)
    assert (opts.margin, opts.missing, opts.max_gap, opts.smooth, opts.fps) == (0.3, "interpolate", 4, 5, 25)
    assert opts.fallback == "dlib" and opts.fallback_params == {"upsample": 1}
    assert stage_options(config["faces"], fps=25)["fallback_params"] == {"upsample": 1}
    with pytest.raises(ValueError, match="faces.fallback.detector: unknown 'nope'"):
        stage_options({**config["faces"], "fallback": {"detector": "nope", "params": {}}}, fps=25)


def test_face_options_reject_bad_values():
    with pytest.raises(ValueError, match="similarity, box"):
        options(align="affine")
    with pytest.raises(ValueError, match="detect_every"):
        options(detect_every=0)
    with pytest.raises(ValueError, match="max_seconds"):
        options(max_seconds=-1)


def test_mtcnn_thread_cap_is_restored_and_checked():
    import torch

    before = torch.get_num_threads()
    detector = create_detector("mtcnn", min_face_size=40, num_threads=1, thresholds=[0.8, 0.7, 0.7], device="cpu")
    image = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    (found,) = detector.detect(image[None])
    assert found is not None and box_iou(found.box, FACE) >= 0.5
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        create_detector("mtcnn", num_threads=-1)
    with pytest.raises(ValueError, match="thresholds"):
        create_detector("mtcnn", thresholds=[0.5, 0.5])


def test_a_left_track_with_one_person_in_view_is_flagged(moving_square):
    # an Aff-Wild2 "<video>_left" track of a video where only one face is found
    left = process_clip({**moving_square, "name": "video7_left"}, SquareDetector(), options())
    plain = process_clip({**moving_square, "name": "video7"}, SquareDetector(), options())
    assert "one_person: left" in left.qc["flags"]
    assert "one_person" not in plain.qc["flags"]
    assert left.arrays["crops"] == plain.arrays["crops"]  # the only face is kept either way
