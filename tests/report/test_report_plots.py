"""What every report and QC figure must show: labelled axes, one colour per series, legends
and labels inside the figure, and byte-identical SVG on a rerun."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from affectflow.report.curves import learning_curves_figure, write_learning_curves
from affectflow.report.figures import oof_figure, score_bars_figure
from affectflow.report.plots import save_svg, series_colours
from affectflow.report.qc import QC_PLOTS, qc_figure, write_qc_report
from affectflow.report.scores import SCORE_COLUMNS
from affectflow.tasks import EMI_TARGETS, task_spec

EMI = task_spec("emi")
# Three runs and four ensembles: the configured one and three compared methods.
SOURCES = [("audio_wav2vec2", "run"), ("visual_resnet18", "run"), ("fused", "run"), ("late_mean", "ensemble"),
           ("compare-weighted", "ensemble"), ("compare-greedy", "ensemble"), ("compare-best", "ensemble")]


def score_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for source, kind in SOURCES:
        values = rng.uniform(-0.2, 0.9, len(EMI_TARGETS))
        scores = dict(zip(EMI_TARGETS, values, strict=True))
        rows.append({"source": source, "kind": kind, "aggregate": "fold mean" if kind == "run" else "pooled",
                     "n": 40, "metric": "pearson", **scores, "mean": values.mean()})
    table = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, *EMI_TARGETS, "mean"])
    table.loc[6, "Joy"] = table.loc[6, "mean"] = np.nan  # an undefined score: "n/a"
    return table


def histories() -> list[dict]:
    train = [1.0, 0.8, 0.6, 0.5, 0.45]
    return [{"fold": 0, "train_loss": train, "monitored": [0.9, 0.7, np.nan, 0.6, 0.65], "best_epoch": 3},
            {"fold": 1, "train_loss": train, "monitored": [1.0, 0.85, 0.8, 0.7, 0.72], "best_epoch": 3},
            {"fold": 2, "train_loss": train, "monitored": list(train), "best_epoch": 4}]


def oof_tables(task: str, n: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    spec = task_spec(task)
    rng = np.random.default_rng(1)
    truth = pd.DataFrame({"id": np.arange(n)}) if not spec.per_frame else pd.DataFrame(
        {"id": 1, "frame": np.arange(1, n + 1)})
    pred = truth.copy()
    for target in spec.targets:
        truth[target] = (rng.random(n) < 0.3).astype(float) if spec.binary else rng.uniform(spec.low, spec.high, n)
        pred[target] = np.clip(truth[target] * 0.6 + rng.normal(0.2, 0.2, n), spec.low, spec.high)
    return pred, truth


def qc_tables() -> dict[str, pd.DataFrame]:
    durations = {"bin_low": [0, 1], "bin_high": [1, 2], "label": ["0-1", "1-2"], "clips": [3, 0]}
    return {"durations": pd.DataFrame(durations),
            "frame_rates": pd.DataFrame({"label": ["no video", "25", "30"], "clips": [1, 5, 7]}),
            "face_rate": pd.DataFrame({"bin_low": [0.0], "bin_high": [0.001], "label": ["0"], "clips": [2]}),
            "qc_reasons": pd.DataFrame({"label": ["media: no_audio", "faces: a_rather_long_flag_name"],
                                        "clips": [4, 1]})}


def every_figure():
    """(name, figure) of each kind of figure the report draws."""
    yield "scores", score_bars_figure(score_table(), EMI)
    yield "learning curves", learning_curves_figure(histories(), title="Learning curves of run visual_resnet18")
    for task in ("emi", "va", "au"):
        pred, truth = oof_tables(task)
        yield f"oof {task}", oof_figure(pred, truth, task_spec(task), title=f"Run {task}")[0]
    for name, table in qc_tables().items():
        yield f"qc {name}", qc_figure(name, table)


@pytest.mark.parametrize("name, fig", list(every_figure()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_figure_has_labelled_axes_and_nothing_outside_it(name, fig):
    canvas = FigureCanvasAgg(fig)  # a canvas of this figure only: no global matplotlib state
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: axis label missing"
        # the value axis (x for the horizontal bars of the QC reasons) has at least three ticks
        value_axis = ax.xaxis if name == "qc qc_reasons" else ax.yaxis
        low, high = sorted(value_axis.get_view_interval())
        ticks = [t for t in value_axis.get_majorticklocs() if low <= t <= high]
        assert len(ticks) >= 3, f"{name}: ticks {ticks}"
        if name.startswith("oof") and "au" not in name:
            assert len([t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]) >= 3, name
    # Everything drawn (legends, titles, tick labels) lies within the figure: nothing cut off.
    bounds = fig.bbox
    drawn = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    assert drawn.x0 >= bounds.x0 - 1 and drawn.y0 >= bounds.y0 - 1, name
    assert drawn.x1 <= bounds.x1 + 1 and drawn.y1 <= bounds.y1 + 1, name
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert bounds.x0 <= box.x0 and box.x1 <= bounds.x1 and bounds.y0 <= box.y0 and box.y1 <= bounds.y1, name


def test_every_run_and_ensemble_has_its_own_colour_and_legend_entry():
    fig = score_bars_figure(score_table(), EMI)
    ax = fig.axes[0]
    colours = [matplotlib.colors.to_hex(container[0].get_facecolor()) for container in ax.containers]
    assert len(colours) == len(SOURCES) and len(set(colours)) == len(SOURCES)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [f"{s} ({'ensemble, pooled' if k == 'ensemble' else 'run, fold mean'})" for s, k in SOURCES]
    # ensembles are hatched, runs plain
    assert [bool(c[0].get_hatch()) for c in ax.containers] == [k == "ensemble" for _, k in SOURCES]
    assert "n/a" in [t.get_text() for t in ax.texts]


def test_each_fold_has_its_own_colour_and_full_legend_labels():
    fig = learning_curves_figure(histories(), title="t")
    lines = {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in fig.axes[0].get_lines()
             if not line.get_label().startswith("_")}
    folds = {label.split()[1]: colour for label, colour in lines.items()}
    assert len(set(folds.values())) == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "fold 2 monitored (= train: no validation split)" in labels and "kept epoch" in labels


def test_series_colours_are_distinct_for_many_series():
    for count in (1, 7, 8, 12, 20):
        assert len(set(series_colours(count))) == count


def test_a_rerun_writes_identical_svg_bytes(tmp_path):
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        for name, fig in every_figure():
            save_svg(fig, out / f"{name.replace(' ', '_')}.svg")
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name
    assert b"<dc:date>" not in (tmp_path / "a" / "scores.svg").read_bytes()


def test_writers_rerun_to_identical_files(tmp_path):
    metrics = []
    for history in histories():
        path = tmp_path / f"fold{history['fold']}" / "metrics.json"
        path.parent.mkdir()
        monitored = [None if np.isnan(v) else v for v in history["monitored"]]
        path.write_text(json.dumps({**history, "monitored": monitored}))
        metrics.append(path)
    media = pd.DataFrame({"id": ["1", "2"], "status": ["ok", "no_audio"], "reason": "", "flags": "",
                          "duration_s": [3.0, 12.0], "fps": [30.0, 25.0]})
    faces = pd.DataFrame({"id": ["1", "2"], "status": "ok", "reason": "", "flags": "", "face_rate": [1.0, 0.5]})
    media.to_csv(tmp_path / "media.tsv", sep="\t", index=False)
    faces.to_csv(tmp_path / "faces.tsv", sep="\t", index=False)
    outputs = {}
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        write_learning_curves(metrics, svg=out / "curves.svg", tsv=out / "curves.tsv", title="t")
        write_qc_report([tmp_path / "media.tsv"], [tmp_path / "faces.tsv"], clips_tsv=out / "clips.tsv",
                        summary_tsv=out / "summary.tsv", plots={p: out / f"{p}.svg" for p in QC_PLOTS},
                        plot_tables={p: out / f"{p}.tsv" for p in QC_PLOTS})
        outputs[attempt] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert outputs["a"] == outputs["b"]
    assert len(outputs["a"]) == 4 + 2 * len(QC_PLOTS)
