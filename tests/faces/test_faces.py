"""Tests of face detection, cropping, JPEG storage, frame decoding and the faces stage."""

from __future__ import annotations

import subprocess
import tracemalloc

import cv2
import numpy as np
import pandas as pd
import pytest

from affectflow.faces import DETECTORS, create_detector
from affectflow.faces.crop import decode_jpeg, encode_jpeg, square_crop
from affectflow.faces.stage import build_faces_shard
from affectflow.h5store import iter_clips, read_file_attrs
from affectflow.media import build_media_shard
from affectflow.registry import UnknownNameError
from affectflow.runtime.ffmpeg import ffmpeg_exe
from affectflow.video import iter_frame_batches, output_size

from conftest import REPO

ASTRONAUT = REPO / "resources" / "demo" / "astronaut.png"
# The face of the astronaut (forehead below the fringe to the chin, cheek to cheek), picked by
# looking at the 512x512 image: x1, y1, x2, y2.
ASTRONAUT_FACE = np.array([175, 75, 270, 180], dtype=np.float64)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *args], check=True,
                   capture_output=True, timeout=60)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def detector():
    return create_detector("mtcnn", min_face_size=40, device="cpu")


def no_face_frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    gradient = np.zeros((240, 320, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 320, dtype=np.uint8)[None, :]
    gradient[..., 1] = np.linspace(0, 255, 240, dtype=np.uint8)[:, None]
    return np.stack([noise, gradient])


# -- detector -------------------------------------------------------------------------------


def test_mtcnn_finds_the_astronaut_face(detector, astronaut):
    (det,) = detector.detect(astronaut[None])
    assert det is not None
    box = np.asarray(det.box, dtype=np.float64)
    assert box.shape == (4,)
    assert iou(box, ASTRONAUT_FACE) >= 0.5
    assert det.score >= 0.9
    assert det.landmarks.shape == (5, 2)
    # all five landmarks inside the hand-picked face box; left eye left of right eye, eyes above mouth
    lm = det.landmarks
    assert ((lm[:, 0] >= ASTRONAUT_FACE[0]) & (lm[:, 0] <= ASTRONAUT_FACE[2])).all()
    assert ((lm[:, 1] >= ASTRONAUT_FACE[1]) & (lm[:, 1] <= ASTRONAUT_FACE[3])).all()
    assert lm[0, 0] < lm[1, 0]
    assert max(lm[0, 1], lm[1, 1]) < min(lm[3, 1], lm[4, 1])


def test_mtcnn_no_face_gives_none(detector):
    assert detector.detect(no_face_frames()) == [None, None]


def test_mtcnn_batch_mixes_face_and_no_face(detector, astronaut):
    frames = np.stack([astronaut, np.zeros_like(astronaut), astronaut[:, ::-1].copy()])
    first, empty, mirrored = detector.detect(frames)
    assert empty is None
    assert first is not None and mirrored is not None
    # the mirrored image has the face mirrored
    mirrored_truth = np.array([512 - ASTRONAUT_FACE[2], ASTRONAUT_FACE[1], 512 - ASTRONAUT_FACE[0],
                               ASTRONAUT_FACE[3]])
    assert iou(np.asarray(mirrored.box, float), mirrored_truth) >= 0.5


def test_min_score_above_one_rejects_everything(astronaut):
    strict = create_detector("mtcnn", min_face_size=40, min_score=1.01, device="cpu")
    assert strict.detect(astronaut[None]) == [None]


def test_unknown_detector_lists_known_names():
    with pytest.raises(UnknownNameError) as info:
        create_detector("retinaface-does-not-exist")
    assert "mtcnn" in str(info.value)
    assert "retinaface-does-not-exist" in str(info.value)
    assert "mtcnn" in DETECTORS.names()


# -- crops ----------------------------------------------------------------------------------


def coordinate_frame(h=200, w=300) -> np.ndarray:
    """A frame whose pixel (y, x) holds (x, y, 7): positions can be read back from a crop."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = np.arange(w, dtype=np.uint16).clip(0, 255)[None, :]
    frame[..., 1] = np.arange(h, dtype=np.uint16).clip(0, 255)[:, None]
    frame[..., 2] = 7
    return frame


def test_square_crop_inside_frame_is_exact():
    frame = coordinate_frame()
    crop = square_crop(frame, np.array([100, 50, 140, 90]), size=40, margin=0.0)
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[0, :, 0], np.arange(100, 140))
    np.testing.assert_array_equal(crop[:, 0, 1], np.arange(50, 90))


def test_square_crop_is_square_around_a_tall_box_with_margin():
    frame = coordinate_frame()
    # a 20 x 40 box centred at (110, 70); side 40 * 1.5 = 60 -> x 80..140, y 40..100
    crop = square_crop(frame, np.array([100, 50, 120, 90]), size=60, margin=0.25)
    assert crop.shape == (60, 60, 3)
    np.testing.assert_array_equal(crop[0, :, 0], np.arange(80, 140))
    np.testing.assert_array_equal(crop[:, 0, 1], np.arange(40, 100))


@pytest.mark.parametrize("size", [16, 112, 224])
def test_square_crop_output_size(size, astronaut):
    crop = square_crop(astronaut, ASTRONAUT_FACE, size=size)
    assert crop.shape == (size, size, 3)
    assert crop.dtype == np.uint8


def test_square_crop_at_top_left_edge_replicates_border():
    frame = coordinate_frame()
    crop = square_crop(frame, np.array([-10, -10, 30, 30]), size=40, margin=0.0)
    assert crop.shape == (40, 40, 3)
    expected_x = np.clip(np.arange(-10, 30), 0, None)
    expected_y = np.clip(np.arange(-10, 30), 0, None)
    np.testing.assert_array_equal(crop[5, :, 0], expected_x)
    np.testing.assert_array_equal(crop[:, 5, 1], expected_y)
    assert (crop[..., 2] == 7).all()


def test_square_crop_at_bottom_right_edge_keeps_face_position():
    frame = coordinate_frame(h=200, w=250)
    # box pokes out of the frame on the right and at the bottom
    crop = square_crop(frame, np.array([230, 180, 270, 220]), size=40, margin=0.0)
    assert crop.shape == (40, 40, 3)
    np.testing.assert_array_equal(crop[0, :, 0], np.clip(np.arange(230, 270), None, 249))
    np.testing.assert_array_equal(crop[:, 0, 1], np.clip(np.arange(180, 220), None, 199))
    # the part inside the frame sits in the top-left of the crop, where it was relative to the box
    np.testing.assert_array_equal(crop[:20, :20], frame[180:200, 230:250])


def test_square_crop_box_larger_than_frame():
    frame = coordinate_frame(h=50, w=60)
    crop = square_crop(frame, np.array([-20, -20, 80, 70]), size=32, margin=0.1)
    assert crop.shape == (32, 32, 3)
    # centre pixel of the crop is the centre of the box
    cy, cx = crop[16, 16, 1], crop[16, 16, 0]
    assert abs(int(cx) - 30) <= 4 and abs(int(cy) - 25) <= 4


# -- JPEG -----------------------------------------------------------------------------------


def test_jpeg_round_trip_keeps_image_and_channel_order(astronaut):
    crop = square_crop(astronaut, ASTRONAUT_FACE, size=112)
    blob = encode_jpeg(crop)
    assert isinstance(blob, bytes) and blob[:2] == b"\xff\xd8"
    back = decode_jpeg(blob)
    assert back.shape == crop.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - crop.astype(int)).mean() < 4

    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    back = decode_jpeg(encode_jpeg(red))
    assert back[..., 0].mean() > 240 and back[..., 2].mean() < 15


def test_jpeg_quality_changes_size(astronaut):
    low, high = encode_jpeg(astronaut, quality=20), encode_jpeg(astronaut, quality=95)
    assert len(low) < len(high)


# -- video decoding -------------------------------------------------------------------------


def test_output_size_even_and_bounded():
    assert output_size(1280, 720, max_side=640) == (640, 360)
    assert output_size(320, 240, max_side=640) == (320, 240)  # never upscaled
    assert output_size(3, 1000, max_side=10) == (2, 10)  # never below 2 pixels
    for w, h, m in [(333, 187, 640), (1921, 1081, 500), (101, 57, 64), (720, 1280, 640)]:
        ow, oh = output_size(w, h, max_side=m)
        assert ow % 2 == 0 and oh % 2 == 0
        scale = min(1.0, m / max(w, h))
        # the nearest even numbers to the scaled size
        assert abs(ow - w * scale) <= 1 and abs(oh - h * scale) <= 1


@pytest.fixture(scope="module")
def counter_clip(tmp_path_factory):
    """2 s at 25 fps, 320x240; frame i is uniform grey at level 5 * i (0..245)."""
    path = tmp_path_factory.mktemp("video") / "counter.mp4"
    frames = np.concatenate([np.full((1, 240, 320, 3), 5 * i, np.uint8) for i in range(50)])
    subprocess.run(
        [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", "320x240", "-r", "25", "-i", "pipe:", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p",
         str(path)],
        input=frames.tobytes(), check=True, capture_output=True, timeout=60,
    )
    return path


def test_iter_frame_batches_resamples_to_fps(counter_clip):
    batches = list(iter_frame_batches(counter_clip, width=320, height=240, fps=30, max_side=160, batch_size=8))
    sizes = [len(b) for b in batches]
    assert abs(sum(sizes) - 60) <= 1
    assert all(s <= 8 for s in sizes)
    assert all(s == 8 for s in sizes[:-1])  # only the last batch is short
    for b in batches:
        assert b.dtype == np.uint8
        assert b.shape[1:] == (120, 160, 3)
    levels = np.concatenate([b.reshape(len(b), -1).mean(1) for b in batches])
    # time runs forward: grey levels never decrease, and upsampling 25 -> 30 fps drops no source frame
    assert (np.diff(levels) >= -1).all()
    source_index = np.round(levels / 5).astype(int)
    assert set(source_index) == set(range(50))
    assert np.abs(levels - 5 * source_index).max() < 2


def test_iter_frame_batches_downsample_and_odd_max_side(counter_clip):
    batches = list(iter_frame_batches(counter_clip, width=320, height=240, fps=10, max_side=101, batch_size=4))
    n = sum(len(b) for b in batches)
    assert abs(n - 20) <= 1
    w, h = output_size(320, 240, max_side=101)
    assert w % 2 == 0 and h % 2 == 0 and max(w, h) <= 102
    assert all(b.shape[1:] == (h, w, 3) for b in batches)
    levels = np.concatenate([b.reshape(len(b), -1).mean(1) for b in batches])
    assert (np.diff(levels) > 0).all()  # every output frame a different source frame


def test_iter_frame_batches_memory_is_bounded_by_a_batch(counter_clip):
    batch_size = 4
    frame_bytes = 240 * 320 * 3
    tracemalloc.start()
    try:
        n = 0
        for batch in iter_frame_batches(counter_clip, width=320, height=240, fps=30, max_side=640,
                                        batch_size=batch_size):
            assert batch.nbytes <= batch_size * frame_bytes
            n += len(batch)
            del batch
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(n - 60) <= 1
    # the whole clip would be 60 frames; a streaming reader holds a few batches at most
    assert peak < 4 * batch_size * frame_bytes < n * frame_bytes


def test_iter_frame_batches_undecodable_raises(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(RuntimeError, match="bad.mp4"):
        list(iter_frame_batches(bad, width=64, height=48, fps=10, max_side=64, batch_size=4))


# -- the faces stage ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_shard(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces_stage")
    face_clip, no_face_clip = d / "astronaut.mp4", d / "testsrc.mp4"
    ffmpeg("-loop", "1", "-framerate", "25", "-i", str(ASTRONAUT), "-f", "lavfi", "-i",
           "sine=frequency=300:duration=1", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", str(face_clip))
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1:size=320x240:rate=25", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(no_face_clip))
    manifest = pd.DataFrame({"id": [11, 12], "split": ["train", "train"], "subject": ["", ""],
                             "media": [str(face_clip), str(no_face_clip)], "shard": [0, 0]})
    path = d / "media_0.h5"
    qc = build_media_shard(manifest, 0, path, sample_rate=16000, peak_dbfs=-3.0)
    assert dict(zip(qc["id"], qc["status"])) == {11: "ok", 12: "no_audio"}
    return path


def test_build_faces_shard_end_to_end(media_shard, tmp_path):
    out = tmp_path / "faces_0.h5"
    fps, crop_size = 5, 64
    qc = build_faces_shard(media_shard, out, detector="mtcnn",
                           detector_params={"min_face_size": 40, "device": "cpu"}, fps=fps, max_side=512,
                           batch_size=3, crop_size=crop_size)
    assert out.exists()
    status = dict(zip(qc["id"].astype(str), qc["status"]))
    assert status == {"11": "ok", "12": "no_face"}

    attrs = read_file_attrs(out)
    assert attrs["stage"] == "faces" and attrs["detector"] == "mtcnn"
    assert attrs["fps"] == fps and attrs["crop_size"] == crop_size

    clips = {cid: (arrays, a) for cid, arrays, a in iter_clips(out)}
    arrays, a = clips["11"]
    n = len(arrays["crops"])
    assert abs(n - 5) <= 1
    for key in ("boxes", "landmarks", "scores", "valid", "timestamps", "fill"):
        assert len(arrays[key]) == n, key
    assert arrays["boxes"].shape == (n, 4) and arrays["landmarks"].shape == (n, 5, 2)
    assert arrays["valid"].all()
    assert a["qc_status"] == "ok"
    np.testing.assert_allclose(arrays["timestamps"], np.arange(n) / fps)
    for box in arrays["boxes"]:
        assert iou(box.astype(float), ASTRONAUT_FACE) >= 0.5
    crop = decode_jpeg(arrays["crops"][0])
    assert crop.shape == (crop_size, crop_size, 3)
    assert (arrays["scores"] >= 0.9).all()

    arrays, a = clips["12"]
    n = len(arrays["crops"])
    assert abs(n - 5) <= 1
    for key in ("boxes", "landmarks", "scores", "valid", "timestamps", "fill"):
        assert len(arrays[key]) == n, key
    assert not arrays["valid"].any()
    assert np.isnan(arrays["boxes"]).all()
    assert all(c == b"" for c in arrays["crops"])
    assert a["qc_status"] == "no_face"
    assert qc.set_index(qc["id"].astype(str)).loc["12", "faces"] == 0
