"""Tests of the demo-set generator: Hume-Vidmimic2 layout, planned media, planted labels."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from affectflow.demo import (
    LABEL_NOISE_SD,
    PROPERTY_COLUMNS,
    build_demo_dataset,
    draw_labels,
    expected_labels,
    plan_clips,
)
from affectflow.tasks import EMI_TARGETS

REPO = Path(__file__).resolve().parents[2]
RESOURCES = REPO / "resources" / "demo"
HEADER = "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy"
TINY = dict(n_clips=10, max_duration_s=3.0, seed=0)


def _build(root: Path, resources: Path = RESOURCES, **kw) -> pd.DataFrame:
    return build_demo_dataset(
        resources, root / "emi", root / "ground_truth.csv", root / "properties.tsv", **kw
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny set (10 clips, <= 3 s), built once for the module."""
    root = tmp_path_factory.mktemp("demo")
    returned = _build(root, **TINY)
    # the returned table is the one written to properties.tsv
    written = pd.read_csv(root / "properties.tsv", sep="\t")
    pd.testing.assert_frame_equal(returned.reset_index(drop=True), written, check_dtype=False)
    return root


def _csv_ids(path: Path) -> set[int]:
    return set(pd.read_csv(path)["Filename"].astype(int))


def _props(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "properties.tsv", sep="\t")


def test_csv_headers_exact(tiny):
    for path in (tiny / "emi" / "train_split.csv", tiny / "emi" / "valid_split.csv",
                 tiny / "ground_truth.csv"):
        lines = path.read_text().splitlines()
        assert lines[0] == HEADER, path
        for line in lines[1:]:
            cells = line.split(",")
            assert cells[0].isdigit() and not (len(cells[0]) > 1 and cells[0].startswith("0"))
            assert all(len(c.split(".")[1]) == 6 for c in cells[1:]), line


def test_ids_splits_and_files(tiny):
    emi = tiny / "emi"
    props = _props(tiny)
    train, val = _csv_ids(emi / "train_split.csv"), _csv_ids(emi / "valid_split.csv")
    gt = _csv_ids(tiny / "ground_truth.csv")
    assert not train & val and not train & gt and not val & gt
    raw = {int(p.stem) for p in (emi / "raw").glob("*.mp4")}
    assert sorted(p.name for p in (emi / "raw").iterdir()) == [f"{i:05d}.mp4" for i in sorted(raw)]
    assert raw == set(props["id"]) == set(range(TINY["n_clips"]))
    assert raw - train - val == gt  # test ids appear only as files
    assert {s: set(g["id"]) for s, g in props.groupby("split")} == {
        "train": train, "val": val, "test": gt}
    assert min(len(train), len(val), len(gt)) >= 2
    # splits interleave: ids are shuffled, not blocks
    ordered = props.sort_values("id")["split"].tolist()
    assert ordered != sorted(ordered, key=["train", "val", "test"].index)
    assert (props.loc[props["split"] == "test", "face_source"] != "none").any()
    assert list(props.columns) == list(PROPERTY_COLUMNS)


def test_labels_in_unit_interval(tiny):
    for path in (tiny / "emi" / "train_split.csv", tiny / "emi" / "valid_split.csv",
                 tiny / "ground_truth.csv"):
        values = pd.read_csv(path)[list(EMI_TARGETS)].to_numpy()
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()


def test_media_match_the_plan(tiny):
    props = _props(tiny)
    for _, r in props.iterrows():
        path = tiny / "emi" / "raw" / f"{int(r['id']):05d}.mp4"
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
            assert (v.width, v.height) == (r["width"], r["height"]) and v.width % 2 == 0
            fps = float(v.average_rate)
            assert abs(fps / r["fps"] - 1) < 0.01, (r["id"], fps, r["fps"])
            n = sum(1 for _ in c.decode(video=0))
            assert abs(n / fps - r["duration_s"]) <= max(0.1, 1 / r["fps"]) + 1e-9
            assert abs(c.duration / 1e6 - r["duration_s"]) <= max(0.1, 1 / r["fps"]) + 1e-9
            assert len(c.streams.audio) == (1 if r["has_audio"] else 0), r["id"]
            if r["has_audio"]:
                a = c.streams.audio[0]
                assert a.codec_context.name == "aac"
                assert a.rate == r["audio_sample_rate"] and a.channels == r["audio_channels"]
    assert (~props["has_audio"]).sum() == 1


def test_special_cases_present_in_tiny_set(tiny):
    props = _props(tiny)
    fps = props["fps_rational"].astype(str)
    assert {"25", "30000/1001", "30", "60"} <= set(fps)
    fast = props[props["fps"] >= 500]
    assert len(fast) == 1 and (fast["duration_s"] <= 1.5).all()
    assert props["duration_s"].min() == pytest.approx(0.5)
    assert props["duration_s"].max() == pytest.approx(TINY["max_duration_s"])
    assert (props["duration_s"] >= 0.5 - 1e-9).all()
    assert (props["duration_s"] <= TINY["max_duration_s"] + 1e-9).all()
    assert (props["face_source"] == "none").sum() >= 1
    assert {"talker", "astronaut"} <= set(props["face_source"])
    # n_frames and duration agree exactly with the rational frame rate
    for _, r in props.iterrows():
        assert r["duration_s"] == pytest.approx(float(r["n_frames"] / Fraction(r["fps_rational"])),
                                                abs=1e-6)


def test_planted_formula(tiny):
    props = _props(tiny).set_index("id")
    labels = pd.concat(
        pd.read_csv(p) for p in (tiny / "emi" / "train_split.csv",
                                 tiny / "emi" / "valid_split.csv", tiny / "ground_truth.csv")
    ).set_index("Filename").loc[props.index, list(EMI_TARGETS)]
    # the documented formulas, written out independently of the module
    gain = (props["gain_db"] + 11.5) / 8.5
    pitch = props["pitch_semitones"] / 4
    tempo = np.log2(props["tempo"]) / np.log2(1.25)
    bright = props["brightness"] / 0.25
    face = props["face_source"].map({"talker": 1.0, "astronaut": -1.0, "none": 0.0})
    mean = pd.DataFrame({
        "Admiration": 0.5 + 0.35 * gain,
        "Amusement": 0.5 + 0.35 * pitch,
        "Determination": 0.5 + 0.30 * tempo,
        "Empathic Pain": 0.5 + 0.35 * bright,
        "Excitement": 0.5 + 0.30 * face,
        "Joy": 0.5 + 0.20 * pitch + 0.20 * bright,
    })
    pd.testing.assert_frame_equal(expected_labels(props)[list(EMI_TARGETS)], mean)
    resid = (labels - mean).to_numpy()
    assert np.abs(resid).max() < 4 * LABEL_NOISE_SD
    assert np.abs(resid).max() > 0  # there is noise


def test_same_seed_same_labels_and_properties(tiny, tmp_path):
    _build(tmp_path, **TINY)
    for rel in ("emi/train_split.csv", "emi/valid_split.csv", "ground_truth.csv",
                "properties.tsv"):
        assert (tmp_path / rel).read_text() == (tiny / rel).read_text(), rel


def test_command_line_builds_the_same_set(tiny, tmp_path):
    from affectflow.demo.__main__ import main

    main([str(RESOURCES), str(tmp_path / "emi"), str(tmp_path / "ground_truth.csv"), str(tmp_path / "properties.tsv"),
          "--n-clips", str(TINY["n_clips"]), "--max-duration-s", str(TINY["max_duration_s"]),
          "--seed", str(TINY["seed"])])
    for rel in ("emi/train_split.csv", "emi/valid_split.csv", "ground_truth.csv", "properties.tsv"):
        assert (tmp_path / rel).read_text() == (tiny / rel).read_text(), rel
    assert sorted(p.name for p in (tmp_path / "emi" / "raw").iterdir()) == sorted(
        p.name for p in (tiny / "emi" / "raw").iterdir()
    )


def test_reads_as_hume_vidmimic2(tiny):
    from affectflow.data import read_emi_manifest

    manifest = read_emi_manifest(tiny / "emi").set_index("id").sort_index()
    props = _props(tiny).set_index("id").sort_index()
    assert manifest["split"].tolist() == props["split"].tolist()
    assert manifest.loc[manifest["split"] == "test", list(EMI_TARGETS)].isna().all().all()


def test_default_plan_meets_the_requirements():
    props = plan_clips(72, 20.0, seed=0)
    assert sorted(props["id"]) == list(range(72))
    counts = props["split"].value_counts()
    assert counts["train"] == 40 and counts["val"] == 14 and counts["test"] == 18
    assert {"25", "30000/1001", "30", "60", "500"} <= set(props["fps_rational"])
    assert (props["fps_rational"] == "30").mean() > 0.5
    assert props.loc[props["fps"] >= 500, "duration_s"].max() <= 1.5
    assert props["duration_s"].min() == pytest.approx(0.5)
    assert props["duration_s"].max() == pytest.approx(20.0)
    assert 3.0 <= props["duration_s"].mean() <= 5.0
    assert props["duration_s"].sum() * 30 < 9000
    noface = props[props["face_source"] == "none"]
    assert 1 <= len(noface) <= 6 and (noface["split"] != "test").sum() > len(noface) / 2
    assert (~props["has_audio"]).sum() == 1
    for split, g in props.groupby("split"):
        assert {"talker", "astronaut"} <= set(g["face_source"]), split
    for col, lo, hi in [("zoom", 1.0, 1.6), ("brightness", -0.25, 0.25),
                        ("pitch_semitones", -4, 4), ("tempo", 0.8, 1.25), ("gain_db", -20, -3)]:
        assert props[col].between(lo, hi).all(), col
    assert set(props["audio_sample_rate"][props["has_audio"]]) <= {44100, 48000}
    assert (props["width"] % 2 == 0).all() and (props["height"] % 2 == 0).all()
    # the planted labels follow their formulas closely over the whole default set
    labels = draw_labels(props, seed=0).set_index("Filename")
    mean = expected_labels(props.set_index("id"))
    for target in EMI_TARGETS:
        assert np.corrcoef(labels[target], mean[target])[0, 1] > 0.9, target
        assert (labels[target] - mean[target]).abs().max() < 4 * LABEL_NOISE_SD
    # a different seed gives a different plan
    other = plan_clips(72, 20.0, seed=1)
    assert not other["pitch_semitones"].equals(props["pitch_semitones"])


def test_the_default_plan_is_the_schemas_demo_set():
    from affectflow.config.schema import section_defaults

    demo = section_defaults("dataset", "demo")
    pd.testing.assert_frame_equal(plan_clips(), plan_clips(demo["n_clips"], demo["max_duration_s"], seed=demo["seed"]))
    assert len(plan_clips()) == 72  # the schema's n_clips


def test_too_few_clips_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="n_clips"):
        _build(tmp_path, n_clips=9)
    with pytest.raises(ValueError, match="max_duration_s"):
        plan_clips(10, 0.5)


def test_ffmpeg_failure_names_the_clip(tmp_path):
    res = tmp_path / "res"
    shutil.copytree(RESOURCES, res)
    (res / "movie-hello.mp4").write_bytes(b"not a video at all")
    with pytest.raises(RuntimeError, match=r"demo clip \d{5}\.mp4") as err:
        _build(tmp_path, res, n_clips=10, max_duration_s=1.0)
    assert "movie-hello" in str(err.value) or "Invalid data" in str(err.value)
    # nothing half-written looks finished, and no split file was written
    raw = tmp_path / "emi" / "raw"
    assert not any(p.name.startswith(".") for p in raw.iterdir())
    assert not (tmp_path / "emi" / "train_split.csv").exists()
