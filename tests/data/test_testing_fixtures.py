"""The data set fixtures of affectflow.testing: real media, official layouts, learnable labels."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from affectflow.data import read_dataset
from affectflow.media import decode_audio
from affectflow.tasks import AU_TARGETS, EMI_TARGETS, ERI_TARGETS
from affectflow.testing import PROPERTIES_FILE, TRUTH_FILE, make_affwild2, make_reaction, make_vidmimic


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixtures")
    seconds = {}
    roots = {}
    for name, fn in [
        ("emi", lambda r: make_vidmimic(r, n_clips=12, seed=5)),
        ("eri", lambda r: make_reaction(r, n_clips=12, seed=5)),
        ("affwild2", lambda r: make_affwild2(r, n_videos=5, seed=5)),
    ]:
        start = time.perf_counter()
        roots[name] = fn(base / name)
        seconds[name] = time.perf_counter() - start
    return roots, seconds


def video_frames(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_builders_are_fast_and_return_root(built, tmp_path):
    roots, seconds = built
    for root in roots.values():
        assert isinstance(root, Path) and root.is_dir()
    # 12 clips in well under the 10 s budget on 2 idle cores; generous for a shared machine
    assert max(seconds.values()) < 30, seconds


def test_media_streams_sizes_and_lengths(built):
    roots, _ = built
    for task, root in [("emi", roots["emi"]), ("eri", roots["eri"]), ("va", roots["affwild2"])]:
        for media in read_dataset(task, root)["media"].unique():
            with av.open(media) as c:
                kinds = sorted(s.type for s in c.streams)
                v = c.streams.video[0]
                duration = float(v.duration * v.time_base)
                assert kinds == ["audio", "video"], media
                assert float(v.average_rate) in (25.0, 30.0)
                assert 1.0 <= duration <= 3.0
                assert v.codec_context.height <= 120 and v.codec_context.width in (160, 320)
            audio = decode_audio(media, sample_rate=16000)
            assert audio.size >= 16000 * 0.9 and np.abs(audio).max() > 1000  # real speech, not silence


def test_mtcnn_finds_the_faces(built):
    from affectflow.faces.detectors.mtcnn import MtcnnDetector

    roots, _ = built
    detector = MtcnnDetector(device="cpu")
    frames = []
    for task, root in [("emi", roots["emi"]), ("eri", roots["eri"]), ("va", roots["affwild2"])]:
        df = read_dataset(task, root).drop_duplicates("media").head(4)
        for media in df["media"]:
            frame = video_frames(media)[10]
            if frame.shape[1] == 320:  # two people: each half must hold a face
                frames += [frame[:, :160], frame[:, 160:]]
            else:
                frames.append(frame)
    found = detector.detect(np.stack(frames))
    assert all(d is not None for d in found), [d is not None for d in found]


def test_clip_labels_are_planted_on_properties(built):
    roots, _ = built
    props = pd.read_csv(roots["emi"] / PROPERTIES_FILE, sep="\t")
    truth = pd.read_csv(roots["emi"] / TRUTH_FILE).set_index("Filename").loc[props["id"]]
    assert pearsonr(props["gain_db"], truth["Admiration"])[0] > 0.8
    assert pearsonr(props["brightness"], truth["Empathic Pain"])[0] > 0.8
    manifest = read_dataset("emi", roots["emi"]).set_index("id")
    labelled = manifest[manifest["split"] != "test"]
    np.testing.assert_allclose(labelled[list(EMI_TARGETS)], truth.loc[labelled.index, list(EMI_TARGETS)])

    props = pd.read_csv(roots["eri"] / PROPERTIES_FILE, sep="\t", dtype={"name": str})
    truth = pd.read_csv(roots["eri"] / TRUTH_FILE, dtype={"File_ID": str}).set_index("File_ID").loc[props["name"]]
    assert np.allclose(truth[list(ERI_TARGETS)].max(axis=1), 1.0)  # row max = 1, as in the release
    assert pearsonr(props["gain_db"], truth["Anxiety"] - truth["Fear"])[0] > 0.8
    assert pearsonr(props["brightness"], truth["Adoration"] - truth["Disgust"])[0] > 0.8


def test_frame_labels_follow_brightness_and_loudness(built):
    roots, _ = built
    root = roots["affwild2"]
    manifest = read_dataset("va", root).set_index("name")
    truth = pd.read_csv(root / "fixture_truth_va.csv", dtype={"name": str})
    au = pd.read_csv(root / "fixture_truth_au.csv", dtype={"name": str})
    loudness, arousal = [], []
    for name, row in manifest.iterrows():
        frames = video_frames(row["media"]).astype(np.float64)
        if frames.shape[2] == 320:
            frames = frames[:, :, :160] if name.endswith("_left") else frames[:, :, 160:]
        luma = frames.mean(axis=(1, 2, 3))
        t = truth[truth["name"] == name].sort_values("frame")
        assert len(t) == row["frames"] == len(luma)
        assert pearsonr(luma, t["valence"])[0] > 0.7, name
        # loudness: audio RMS in dB over 5 video frames around each frame, centred per track
        # (a track whose speech pauses at a loud phase is noisier, so the check pools tracks)
        audio = decode_audio(row["media"], sample_rate=16000).astype(np.float64)
        hop = 16000 / row["fps"]
        rms = np.array([
            np.sqrt(np.mean(audio[max(0, int((k - 2) * hop)): int((k + 3) * hop)] ** 2) + 1e-9) for k in range(len(t))
        ])
        db = 20 * np.log10(rms)
        loudness.append(db - db.mean())
        arousal.append(t["arousal"].to_numpy() - t["arousal"].mean())
        a = au[au["name"] == name]
        assert set(np.unique(a[list(AU_TARGETS)].to_numpy())) <= {0.0, 1.0}
        assert 0 < a[list(AU_TARGETS)].to_numpy().mean() < 1
    assert pearsonr(np.concatenate(loudness), np.concatenate(arousal))[0] > 0.6


def test_same_seed_same_labels(tmp_path):
    a = make_reaction(tmp_path / "a", n_clips=5, seed=11, layout="labels_partition")
    b = make_reaction(tmp_path / "b", n_clips=5, seed=11, layout="labels_partition")
    c = make_reaction(tmp_path / "c", n_clips=5, seed=12, layout="labels_partition")
    for name in ("labels.csv", "partition.csv", TRUTH_FILE, PROPERTIES_FILE):
        assert (a / name).read_text() == (b / name).read_text()
    assert (a / TRUTH_FILE).read_text() != (c / TRUTH_FILE).read_text()
    with pytest.raises(ValueError, match=r"layout must be 'data_info' or 'labels_partition', not 'x'"):
        make_reaction(tmp_path / "d", layout="x")
    with pytest.raises(ValueError, match=r"n_videos must be an integer >= 3"):
        make_affwild2(tmp_path / "e", n_videos=2)
