"""The data-quality table and plots built from the media and faces QC tables."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from affectflow.report.qc import QC_PLOTS, histogram, qc_figure, write_qc_report


@pytest.fixture()
def qc_tables(tmp_path):
    media = pd.DataFrame({
        "id": ["1", "2", "3", "4"], "stage": "media",
        "status": ["ok", "no_audio", "unreadable", "ok"],
        "reason": ["", "no audio stream", "x.mp4: cannot probe", ""],
        "flags": ["high_fps: 1000 fps resampled", "", "", "rotated: 90; short: 0.10 s"],
        "duration_s": [12.0, 3.0, 0.0, 0.1], "fps": [1000.0, 30.0, 0.0, 30.0],
        "width": [640, 320, 0, 175], "height": [360, 240, 0, 143], "rotation": [0, 0, 0, 90],
        "has_video": [True, True, False, True], "has_audio": [True, False, False, True],
        "audio_s": [12.0, 0.0, 0.0, 0.1],
    })
    faces = pd.DataFrame({
        "id": ["1", "2", "3", "4"], "stage": "faces", "status": ["ok", "no_face", "unreadable", "ok"],
        "reason": ["", "no face in any of 90 frames", "x.mp4: cannot probe", ""], "flags": "",
        "frames": [360, 90, 0, 3], "valid": [300, 0, 0, 3], "face_rate": [0.8, 0.0, 0.0, 1.0],
    })
    paths = []
    for name, frame in [("m0", media.iloc[:2]), ("m1", media.iloc[2:]), ("f0", faces.iloc[:2]), ("f1", faces.iloc[2:])]:
        path = tmp_path / f"{name}.tsv"
        frame.to_csv(path, sep="\t", index=False)
        paths.append(path)
    return paths, media, faces


def test_qc_tables_and_plots(qc_tables, tmp_path):
    (m0, m1, f0, f1), media, faces = qc_tables
    plots = {name: tmp_path / "qc" / f"{name}.svg" for name in QC_PLOTS}
    tables = {name: tmp_path / "qc" / f"{name}.tsv" for name in QC_PLOTS}
    write_qc_report([m0, m1], [f0, f1], clips_tsv=tmp_path / "qc" / "clips.tsv",
                    summary_tsv=tmp_path / "qc" / "summary.tsv", plots=plots, plot_tables=tables)
    clips = pd.read_csv(tmp_path / "qc" / "clips.tsv", sep="\t", dtype={"id": str})
    assert list(clips["id"]) == ["1", "2", "3", "4"]
    assert list(clips["faces_status"]) == list(faces["status"])
    assert list(clips["media_reason"].fillna("")) == list(media["reason"])
    summary = dict(pd.read_csv(tmp_path / "qc" / "summary.tsv", sep="\t").itertuples(index=False))
    assert int(summary["clips"]) == 4
    durations = media["duration_s"][media["duration_s"] > 0]
    assert float(summary["duration_median_s"]) == pytest.approx(durations.median())
    assert float(summary["duration_max_s"]) == pytest.approx(12.0)
    assert float(summary["fps_30_share"]) == pytest.approx(0.5) and float(summary["fps_1000_share"]) == 0.25
    # face rate over clips with video: (0.8 + 0 + 1) / 3
    assert float(summary["face_rate_mean"]) == pytest.approx(1.8 / 3, abs=1e-4)
    assert int(summary["clips_without_any_face"]) == 1
    assert int(summary["media_status_unreadable"]) == 1 and int(summary["faces_status_no_face"]) == 1
    assert int(summary["media_flag_rotated"]) == 1 and int(summary["media_flag_short"]) == 1
    bars = {}
    for name in QC_PLOTS:
        assert ET.parse(plots[name]).getroot().tag == "{http://www.w3.org/2000/svg}svg", name
        table = pd.read_csv(tables[name], sep="\t", keep_default_na=False)
        bars[name] = dict(zip(table["label"], table["clips"], strict=True))
        assert bars[name] and sum(bars[name].values()) > 0, name
        assert len(qc_figure(name, table).axes[0].patches) == len(table), name  # one bar a row
    assert {k: v for k, v in bars["durations"].items() if v} == {"0-0.5": 2, "2-5": 1, "10-20": 1}
    assert bars["frame_rates"] == {"no video": 1, "30": 2, "1000": 1}
    assert {k: v for k, v in bars["face_rate"].items() if v} == {"0": 2, "0.75-0.9": 1, "0.9-1": 1}
    reasons = bars["qc_reasons"]
    assert reasons["media: unreadable"] == 1 and reasons["faces: no_face"] == 1 and reasons["media: high_fps"] == 1
    with pytest.raises(ValueError, match="durations"):
        write_qc_report([m0], [f0], clips_tsv=tmp_path / "c.tsv", summary_tsv=tmp_path / "s.tsv",
                        plots={"pie": tmp_path / "pie.svg"})


def test_histogram_counts_match_numpy():
    labels, counts = histogram([0.1, 0.2, 3, 7, 7, 100], [0, 1, 5, 10, 1000])
    assert counts == [2, 1, 2, 1] and labels[0] == "0-1"


