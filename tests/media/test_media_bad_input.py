"""Hostile input through the media and faces stages: one shard holds every bad clip next to a
good one; each case gets a QC row with its reason and the documented fallback, and none fails
the shard. One test per case, on files generated here."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pandas as pd
import pytest

from affectflow.faces.crop import decode_jpeg
from affectflow.faces.stage import build_faces_shard
from affectflow.h5store import iter_clips
from affectflow.media import build_media_shard
from affectflow.runtime.ffmpeg import ffmpeg_exe

from conftest import REPO

ASTRONAUT = REPO / "resources" / "demo" / "astronaut.png"
# The astronaut's face in the 512x512 image (x1, y1, x2, y2), picked by eye.
FACE = np.array([175, 75, 270, 180], dtype=np.float64)
FPS = 10  # decoding rate of the faces stage in these tests (small: MTCNN on CPU)
MAX_SIDE = 192


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *args], check=True,
                   capture_output=True, timeout=120)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def face_video(path, *, seconds=1.0, rate=25, vf="", extra=(), audio=True, image=ASTRONAUT):
    args = ["-loop", "1", "-framerate", str(rate), "-i", str(image)]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}"]
    args += ["-t", str(seconds)]
    if vf:
        args += ["-vf", vf]
    args += [*extra] if extra else ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
    ffmpeg(*args, str(path))
    return path


@pytest.fixture(scope="module")
def bad_shard(tmp_path_factory):
    """Every case in one shard: returns {case: (media attrs, media QC row, faces arrays, faces attrs, faces QC row)}."""
    d = tmp_path_factory.mktemp("bad input")
    files = {}
    files["good"] = face_video(d / "good.mp4")
    # truncated: a faststart mp4 (header first) with many keyframes, cut at 60% of its bytes
    whole = face_video(d / "whole.mp4", seconds=2.0, vf="scale=256:256",
                       extra=("-g", "5", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"))
    data = whole.read_bytes()
    files["truncated"] = d / "truncated.mp4"
    files["truncated"].write_bytes(data[: int(len(data) * 0.6)])
    # the same cut on an mp4 whose index sits at the end: nothing can be read
    tail = face_video(d / "tail_index.mp4", seconds=2.0, vf="scale=256:256")
    files["truncated_no_index"] = d / "truncated_no_index.mp4"
    files["truncated_no_index"].write_bytes(tail.read_bytes()[: int(tail.stat().st_size * 0.6)])
    files["zero_bytes"] = d / "zero.mp4"
    files["zero_bytes"].write_bytes(b"")
    files["audio_only"] = d / "audio_only.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1.5", "-c:a", "aac", str(files["audio_only"]))
    files["video_only"] = face_video(d / "video_only.mp4", audio=False)
    files["no_face"] = d / "no_face.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1:size=320x240:rate=25", "-f", "lavfi", "-i",
           "sine=duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(files["no_face"]))
    files["fps_1000"] = face_video(d / "fps1000.mp4", seconds=0.5, rate=1000, vf="scale=256:256")
    files["short_0.1s"] = face_video(d / "short.mp4", seconds=0.1)
    files["odd_size"] = face_video(d / "odd.mp4", vf="scale=175:143",
                                   extra=("-c:v", "libx264", "-pix_fmt", "yuv444p"))
    # rotation: the stored picture is turned clockwise; the display matrix turns it back upright.
    image = cv2.imread(str(ASTRONAUT))[:384]  # 512 wide, 384 high: the face is inside
    cv2.imwrite(str(d / "wide.png"), image)
    stored = face_video(d / "stored.mp4", image=d / "wide.png", vf="transpose=1")
    files["rotated"] = d / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(files["rotated"]))
    files["grayscale"] = face_video(d / "gray.mkv", vf="format=gray", extra=("-c:v", "ffv1"))
    # variable frame rate: 10 frames at 10 fps, then 30 fps
    files["variable_fps"] = face_video(
        d / "vfr.mp4", seconds=2.0, audio=False,
        vf="setpts='if(lt(N,10),N/(10*TB),(1+(N-10)/30)/TB)'",
        extra=("-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p"))
    odd_name = d / "clip with spaces 'single' \"double\" é ü 漢字.mp4"
    odd_name.write_bytes(files["good"].read_bytes())
    files["odd_name"] = odd_name

    cases = list(files)
    manifest = pd.DataFrame({"id": range(len(cases)), "split": "train", "subject": "",
                             "media": [str(files[c]) for c in cases], "shard": 0})
    media_qc = build_media_shard(manifest, 0, d / "media.h5", sample_rate=16000, peak_dbfs=-3.0)
    faces_qc = build_faces_shard(d / "media.h5", d / "faces.h5", detector="mtcnn",
                                 detector_params={"min_face_size": 24, "device": "cpu"}, fps=FPS,
                                 max_side=MAX_SIDE, batch_size=8, crop_size=64)
    media = {cid: attrs for cid, _, attrs in iter_clips(d / "media.h5")}
    faces = {cid: (arrays, attrs) for cid, arrays, attrs in iter_clips(d / "faces.h5")}
    out = {}
    for i, case in enumerate(cases):
        out[case] = (media[str(i)], media_qc[media_qc["id"] == i].iloc[0].to_dict(), *faces[str(i)],
                     faces_qc[faces_qc["id"].astype(int) == i].iloc[0].to_dict())
    return out


def assert_face_found(arrays, *, scale, min_valid: int = 1):
    """A valid face where the astronaut's is, in a frame scaled by ``scale`` (or (sx, sy))."""
    assert arrays["valid"].sum() >= min_valid
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    box = arrays["boxes"][np.flatnonzero(arrays["valid"])[0]] / np.array([sx, sy, sx, sy])
    assert iou(box, FACE) >= 0.5
    crop = decode_jpeg(arrays["crops"][np.flatnonzero(arrays["valid"])[0]])
    assert crop.shape == (64, 64, 3)


def test_good_clip_in_the_same_shard(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["good"]
    assert mqc["status"] == "ok" and fqc["status"] == "ok"
    assert fqc["frames"] == pytest.approx(FPS, abs=1)
    assert_face_found(arrays, scale=MAX_SIDE / 512, min_valid=FPS - 1)


def test_truncated_mp4_keeps_the_frames_before_the_cut(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["truncated"]
    assert media["has_video"]
    assert fqc["status"] == "truncated"
    assert 0 < fqc["frames"] < 0.8 * 2.0 * FPS  # some of the 20 frames, not all
    assert "of about 20 frames" in fqc["reason"]
    assert_face_found(arrays, scale=MAX_SIDE / 512)  # a 256x256 video of the 512x512 picture, decoded at 192
    # the cut one with its index at the end cannot be opened at all
    media, mqc, arrays, attrs, fqc = bad_shard["truncated_no_index"]
    assert mqc["status"] == "unreadable" and "truncated_no_index.mp4" in mqc["reason"]
    assert fqc["status"] == "unreadable" and len(arrays["crops"]) == 0


def test_zero_byte_file(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["zero_bytes"]
    assert mqc["status"] == "unreadable" and "zero.mp4" in mqc["reason"]
    assert fqc["status"] == "unreadable"
    assert len(arrays["crops"]) == 0 and arrays["boxes"].shape == (0, 4)
    assert attrs["qc_status"] == "unreadable"


def test_audio_only(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["audio_only"]
    assert mqc["status"] == "no_video" and mqc["audio_s"] == pytest.approx(1.5, abs=0.1)
    assert fqc["status"] == "no_video" and fqc["frames"] == 0
    assert len(arrays["valid"]) == 0


def test_video_only(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["video_only"]
    assert mqc["status"] == "no_audio" and mqc["audio_s"] == 0
    assert fqc["status"] == "ok"
    assert_face_found(arrays, scale=MAX_SIDE / 512, min_valid=FPS - 1)


def test_no_face_in_any_frame(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["no_face"]
    assert mqc["status"] == "ok"
    assert fqc["status"] == "no_face" and "no face in any of" in fqc["reason"]
    assert fqc["frames"] == pytest.approx(FPS, abs=1) and not arrays["valid"].any()
    assert set(arrays["fill"]) == {b"dropped"} and fqc["face_rate"] == 0


def test_1000_fps_is_resampled(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["fps_1000"]
    assert media["fps"] == pytest.approx(1000)
    assert "high_fps" in mqc["flags"]
    assert fqc["status"] == "ok" and fqc["frames"] == pytest.approx(0.5 * FPS, abs=1)
    np.testing.assert_allclose(np.diff(arrays["timestamps"]), 1 / FPS)
    assert_face_found(arrays, scale=MAX_SIDE / 512, min_valid=3)


def test_clip_of_a_tenth_of_a_second(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["short_0.1s"]
    assert media["duration_s"] < 0.5 and "short" in mqc["flags"]
    assert fqc["status"] == "ok" and 1 <= fqc["frames"] <= 2  # 0.1 s at 10 fps
    assert_face_found(arrays, scale=MAX_SIDE / 512)


def test_odd_resolution(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["odd_size"]
    assert (media["width"], media["height"]) == (175, 143)
    assert "odd_size" in mqc["flags"]
    assert fqc["status"] == "ok"
    # 175x143 is decoded as 176x144 (even), so boxes are in that frame
    assert_face_found(arrays, scale=(176 / 512, 144 / 512), min_valid=FPS - 1)


def test_rotation_metadata_gives_upright_frames(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["rotated"]
    assert media["rotation"] in (90, 270)
    assert (media["width"], media["height"]) == (384, 512)  # stored sideways
    assert "rotated" in mqc["flags"]
    assert fqc["status"] == "ok"
    # found where the face is in the upright 512x384 picture (decoded at 192x144)
    assert_face_found(arrays, scale=MAX_SIDE / 512, min_valid=FPS - 1)
    crop_landmarks = arrays["crop_landmarks"][arrays["valid"]]
    assert (crop_landmarks[:, 0, 1] < crop_landmarks[:, 3, 1]).all()


def test_grayscale(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["grayscale"]
    assert media["pix_fmt"].startswith("gray") and "grayscale" in mqc["flags"]
    assert fqc["status"] == "ok"
    assert_face_found(arrays, scale=MAX_SIDE / 512, min_valid=FPS - 1)
    crop = decode_jpeg(arrays["crops"][0]).astype(int)
    assert np.abs(crop[..., 0] - crop[..., 2]).mean() < 3  # three equal channels


def test_variable_frame_rate(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["variable_fps"]
    assert media["variable_fps"] and "variable_fps" in mqc["flags"]
    assert fqc["status"] == "ok"
    # 2 s of content at a constant 10 fps, whatever the source's timing
    assert fqc["frames"] == pytest.approx(2 * FPS, abs=1)
    np.testing.assert_allclose(np.diff(arrays["timestamps"]), 1 / FPS)
    assert_face_found(arrays, scale=MAX_SIDE / 512, min_valid=2 * FPS - 2)


def test_file_name_with_spaces_quotes_and_non_ascii(bad_shard):
    media, mqc, arrays, attrs, fqc = bad_shard["odd_name"]
    assert "漢字" in media["media"] and "'single'" in media["media"]
    assert mqc["status"] == "ok" and mqc["audio_s"] == pytest.approx(1.0, abs=0.1)
    assert fqc["status"] == "ok"
    assert_face_found(arrays, scale=MAX_SIDE / 512, min_valid=FPS - 1)


def test_a_crashing_clip_is_recorded_and_the_shard_goes_on(tmp_path, monkeypatch, bad_shard):
    """Even an unexpected exception inside one clip becomes an ``error`` row."""
    import affectflow.faces.clip as clip

    good = bad_shard["good"][0]["media"]
    manifest = pd.DataFrame({"id": [1, 2], "split": "train", "subject": "", "media": [good, good], "shard": 0})
    build_media_shard(manifest, 0, tmp_path / "m.h5", sample_rate=16000, peak_dbfs=-3.0)
    real = clip.detect_pass
    calls = []

    def flaky(media, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("simulated")
        return real(media, *args, **kwargs)

    monkeypatch.setattr(clip, "detect_pass", flaky)
    qc = build_faces_shard(tmp_path / "m.h5", tmp_path / "f.h5", detector="mtcnn",
                           detector_params={"min_face_size": 20, "device": "cpu"}, fps=5, max_side=128,
                           batch_size=8, crop_size=32)
    assert list(qc["status"]) == ["error", "ok"]
    assert "MemoryError" in qc["reason"].iloc[0]
    assert (tmp_path / "f.h5").exists()
