"""Per-video outputs of a predicted set: tables with face flags, statuses with reasons, the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from affectflow.data.emi import write_manifest
from affectflow.h5store import ShardWriter
from affectflow.predict.outputs import video_status, write_predict_outputs
from affectflow.tasks import task_spec

EMI, VA = task_spec("emi"), task_spec("va")


def _faces_shard(path, timelines):
    """A faces shard as the stage writes it under a filling policy (004's nearest): every frame
    valid, those without a face of their own filled from the nearest one (``fill``)."""
    with ShardWriter(path, file_attrs={"stage": "faces"}) as writer:
        for clip_id, (times, found) in timelines.items():
            found = np.asarray(found, bool)
            fill = np.where(found, "none", "nearest").astype("S12")
            fill[found & (np.arange(len(found)) % 2 == 1)] = "tracked"  # between keyframes: found too
            valid = np.full(len(found), found.any())
            writer.add_clip(clip_id, {"timestamps": np.asarray(times, float), "valid": valid, "fill": fill})


def _qc(path, rows):
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


def _outputs(tmp_path, spec, manifest_rows, predictions, timelines, media_rows, faces_rows):
    manifest = pd.DataFrame(manifest_rows)
    manifest["split"], manifest["subject"] = "predict", ""
    write_manifest(manifest[["id", "split", "subject", "media", *[c for c in manifest if c not in
                                                                   ("id", "split", "subject", "media")]]],
                   tmp_path / "manifest.tsv")
    predictions.to_csv(tmp_path / "predictions.csv", index=False)
    _faces_shard(tmp_path / "faces.h5", timelines)
    _qc(tmp_path / "media.qc.tsv", media_rows)
    _qc(tmp_path / "faces.qc.tsv", faces_rows)
    summary = write_predict_outputs(tmp_path / "predictions.csv", tmp_path / "manifest.tsv",
                                    [tmp_path / "media.qc.tsv"], [tmp_path / "faces.h5"], [tmp_path / "faces.qc.tsv"],
                                    tmp_path / "videos", tmp_path / "summary.csv", tmp_path / "index.html",
                                    task=spec.name, title="t")
    return summary


def test_per_frame_tables_carry_time_face_flags_and_every_video(tmp_path):
    fps, frames = 10.0, 20
    valid = np.ones(frames, bool)
    valid[4:9] = False  # frames 5..9 without a face
    values = np.linspace(-0.5, 0.5, frames)
    predictions = pd.DataFrame({"id": [1] * frames + [2] * 6, "frame": list(range(1, frames + 1)) + list(range(1, 7)),
                                "valence": list(values) + [np.nan] * 6, "arousal": list(-values) + [np.nan] * 6})
    summary = _outputs(
        tmp_path, VA,
        [{"id": 1, "media": "/v/a.mp4", "name": "a", "fps": fps, "frames": frames},
         {"id": 2, "media": "/v/b.mp4", "name": "b", "fps": 30.0, "frames": 6}],
        predictions, {1: (np.arange(frames) / fps, valid), 2: (np.arange(6) / 30, np.zeros(6, bool))},
        [{"id": 1, "status": "ok", "reason": ""}, {"id": 2, "status": "ok", "reason": ""}],
        [{"id": 1, "status": "ok", "reason": "", "frames": frames, "valid": int(valid.sum())},
         {"id": 2, "status": "no_face", "reason": "no face in any of 6 frames", "frames": 6, "valid": 0}])
    a = pd.read_csv(tmp_path / "videos" / "a.csv")
    assert list(a.columns) == ["frame", "time_s", "face", "valence", "arousal"]
    assert list(a["frame"]) == list(range(1, frames + 1))
    np.testing.assert_allclose(a["time_s"], np.arange(frames) / fps)
    assert list(np.flatnonzero(a["face"].to_numpy() == 0) + 1) == [5, 6, 7, 8, 9]
    np.testing.assert_allclose(a["valence"], values, atol=1e-6)
    by_video = summary.set_index("video")
    assert list(by_video.index) == ["a", "b"]  # every video, the one without prediction too
    assert by_video.at["a", "status"] == "ok" and by_video.at["a", "face_frames"] == frames - 5
    assert by_video.at["b", "status"] == "no_prediction"
    assert by_video.at["b", "reason"] == "no face in any of 6 frames"
    np.testing.assert_allclose(by_video.at["a", "valence"], values.mean(), atol=1e-6)
    assert (tmp_path / "videos" / "b.csv").is_file() and (tmp_path / "videos" / "b.svg").is_file()
    page = (tmp_path / "index.html").read_text()
    assert page.count("<svg") == 2 and "no face in any of 6 frames" in page


def test_clip_rows_say_partial_and_unreadable(tmp_path):
    targets = list(EMI.targets)
    predictions = pd.DataFrame({"id": [1, 2, 3], **{t: [0.25, 0.5, np.nan] for t in targets}})
    summary = _outputs(
        tmp_path, EMI,
        [{"id": i, "media": f"/v/{n}.mp4", "name": n} for i, n in ((1, "good"), (2, "mute"), (3, "empty"))],
        predictions, {1: (np.arange(3) / 30, [True, True, False]), 2: (np.arange(2) / 30, [True, True]),
                      3: (np.zeros(0), np.zeros(0, bool))},
        [{"id": 1, "status": "ok", "reason": ""},
         {"id": 2, "status": "no_audio", "reason": "no audio stream; audio features will be empty"},
         {"id": 3, "status": "error", "reason": "/v/empty.mp4: cannot open: Invalid data"}],
        [{"id": 1, "status": "ok", "reason": ""}, {"id": 2, "status": "ok", "reason": ""},
         {"id": 3, "status": "error", "reason": "no video stream"}])
    by_video = summary.set_index("video")
    assert list(by_video["status"]) == ["ok", "partial", "no_prediction"]
    assert by_video.at["mute", "reason"] == "no audio stream; audio features will be empty"
    assert by_video.at["empty", "reason"] == "/v/empty.mp4: cannot open: Invalid data; no video stream"
    good = pd.read_csv(tmp_path / "videos" / "good.csv")
    assert len(good) == 1 and good.at[0, "frames"] == 3 and good.at[0, "face_frames"] == 2
    assert good.at[0, "Joy"] == 0.25
    written = pd.read_csv(tmp_path / "summary.csv")
    assert len(written) == 3 and np.isnan(written.set_index("video").at["empty", "Joy"])


def test_status_without_qc_row_or_members():
    assert video_status(False, None) == ("no_prediction", "not processed by the media stage")
    ok = pd.Series({"media_status": "ok", "faces_status": "ok"})
    assert video_status(True, ok) == ("ok", "")
    assert video_status(False, ok) == ("no_prediction", "no member of the ensemble predicted it")
