"""The report's figures (scores, OOF predictions, learning curves) and the rendered report.

Unit tests check the numbers written beside each figure (its table) against scipy /
scikit-learn on tables written here, and what the matplotlib figure shows (titles, legends,
bar geometry) on the figure object. The end-to-end test runs the real workflow on the tiny demo
set, builds `snakemake --report` and opens it in headless Chromium (Debian's chromium +
chromium-driver: `.ci/browser_deps.sh` installs them).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import f1_score

from affectflow.report.curves import learning_curves_figure, read_history, write_learning_curves
from affectflow.report.figures import oof_figure, score_bars_figure, write_oof_figure, write_score_figure
from affectflow.report.qc import QC_PLOTS
from affectflow.report.scores import bar_values, read_predictions
from affectflow.scoring import read_truth
from affectflow.tasks import EMI_TARGETS, task_spec

from conftest import run_snakemake

SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
EMI = task_spec("emi")


def parse_svg(path: Path) -> ET.Element:
    """The root of a well-formed SVG document with a positive size (its viewBox)."""
    root = ET.fromstring(path.read_text())
    assert root.tag == f"{SVG}svg"
    width, height = (float(v) for v in root.get("viewBox").split()[2:])
    assert width > 0 and height > 0
    return root


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def legend_texts(fig) -> set[str]:
    return {t.get_text() for legend in fig.legends for t in legend.get_texts()}


# -- a small EMI experiment written to disk ---------------------------------------------------


@pytest.fixture
def emi_experiment(tmp_path):
    """Manifest with 40 labelled and 5 test clips; runs a, b with 2 folds; an ensemble of both."""
    rng = np.random.default_rng(7)
    ids = np.arange(100, 145)
    split = np.where(ids < 140, np.where(ids % 5 == 0, "val", "train"), "test")
    labels = rng.uniform(0, 1, (len(ids), len(EMI_TARGETS)))
    labels[split == "test"] = np.nan
    manifest = pd.DataFrame({"id": ids, "split": split, "subject": "", "media": [f"raw/{i}.mp4" for i in ids]})
    manifest[list(EMI_TARGETS)] = labels
    manifest["fold"] = np.where(split == "test", -1, ids % 2)
    manifest_path = tmp_path / "manifest.tsv"
    manifest.to_csv(manifest_path, sep="\t", index=False, na_rep="")
    labelled = manifest[manifest["split"] != "test"]
    runs = {}
    for run, noise in (("a", 0.2), ("b", 0.5)):
        runs[run] = []
        for k in range(2):
            part = labelled[labelled["fold"] == k]
            pred = pd.DataFrame({"id": part["id"]})
            pred[list(EMI_TARGETS)] = part[list(EMI_TARGETS)].to_numpy() + rng.normal(0, noise, (len(part), 6))
            if run == "b" and k == 1:
                pred.iloc[0, 1:] = np.nan  # a clip this run could not predict (no audio)
            path = tmp_path / run / f"fold{k}" / "oof.csv"
            path.parent.mkdir(parents=True)
            pred.to_csv(path, index=False)
            runs[run].append(path)
    stacked = pd.concat([pd.concat([pd.read_csv(p) for p in paths]) for paths in runs.values()])
    ensemble = stacked.groupby("id")[list(EMI_TARGETS)].mean().reset_index()
    ensemble_path = tmp_path / "ensemble" / "oof.csv"
    ensemble_path.parent.mkdir()
    ensemble.to_csv(ensemble_path, index=False)
    return {"manifest": manifest_path, "truth": labelled.set_index("id"), "runs": runs, "ensemble": ensemble_path}


def scipy_scores(pred_path_or_frame, truth: pd.DataFrame) -> dict[str, float]:
    """Pearson r per target with scipy, on the rows that have a prediction."""
    pred = pd.read_csv(pred_path_or_frame) if isinstance(pred_path_or_frame, Path) else pred_path_or_frame
    pred = pred.dropna()
    return {t: pearsonr(truth.loc[pred["id"], t], pred[t]).statistic for t in EMI_TARGETS}


def expected_bars(exp) -> dict[tuple[str, str], float]:
    """(source, target) -> score: runs' mean over folds, the ensemble's pooled score; and means."""
    values = {}
    for run, folds in exp["runs"].items():
        per_fold = [scipy_scores(p, exp["truth"]) for p in folds]
        for t in EMI_TARGETS:
            values[(run, t)] = float(np.mean([s[t] for s in per_fold]))
    for t, v in scipy_scores(exp["ensemble"], exp["truth"]).items():
        values[("late_mean", t)] = v
    for source in ("a", "b", "late_mean"):
        values[(source, "mean")] = float(np.mean([values[(source, t)] for t in EMI_TARGETS]))
    return values


def test_score_bars_are_the_fold_mean_and_pooled_pearson_computed_by_scipy(emi_experiment, tmp_path):
    exp = emi_experiment
    svg, tsv = tmp_path / "scores.svg", tmp_path / "scores.tsv"
    write_score_figure(exp["runs"], {"late_mean": exp["ensemble"]}, exp["manifest"], task="emi", svg=svg, tsv=tsv)
    parse_svg(svg)
    table = read_tsv(tsv)
    drawn = bar_values(table)
    bars = {(row["source"], target): row[target] for _, row in drawn.iterrows() for target in [*EMI_TARGETS, "mean"]}
    expected = expected_bars(exp)
    assert set(bars) == set(expected)
    for key, value in expected.items():
        assert bars[key] == pytest.approx(value, abs=1e-5), key
    # The drawing: the bars of source i are containers[i], one per group; every bar starts at the
    # zero line and its height is the score, in one data scale for all (heights proportional).
    ax = score_bars_figure(table, EMI).axes[0]
    assert len(ax.containers) == len(drawn)
    for i, source in enumerate(drawn["source"]):
        for g, target in enumerate([*EMI_TARGETS, "mean"]):
            bar = ax.containers[i][g]
            assert bar.get_y() == 0.0, (source, target)
            assert bar.get_height() == pytest.approx(expected[(source, target)], abs=1e-5), (source, target)
    pooled_b = table[(table["source"] == "b") & (table["aggregate"] == "pooled")].iloc[0]
    b = pd.concat([pd.read_csv(p) for p in exp["runs"]["b"]])
    for t, v in scipy_scores(b, exp["truth"]).items():
        assert pooled_b[t] == pytest.approx(v, abs=1e-5)
    assert pooled_b["n"] == 39  # 40 labelled clips, one without a prediction


def test_oof_scatter_draws_every_clip_and_titles_scipy_scores(emi_experiment, tmp_path):
    exp = emi_experiment
    svg, tsv = tmp_path / "oof.svg", tmp_path / "oof.tsv"
    write_oof_figure(exp["runs"]["b"], exp["manifest"], task="emi", svg=svg, tsv=tsv, title="Run b")
    parse_svg(svg)
    points = read_tsv(tsv)
    assert list(points.columns) == ["target", "id", "truth", "prediction"]
    assert set(points["target"]) == set(EMI_TARGETS)
    stacked = pd.concat([pd.read_csv(p) for p in exp["runs"]["b"]]).dropna().set_index("id")
    for target in EMI_TARGETS:
        drawn = points[points["target"] == target].set_index("id")
        assert len(drawn) == 39  # every clip with a label and a prediction
        assert np.allclose(drawn["truth"], exp["truth"].loc[drawn.index, target], atol=1e-5)
        assert np.allclose(drawn["prediction"], stacked.loc[drawn.index, target], atol=1e-5)
    scores = scipy_scores(stacked.reset_index(), exp["truth"])
    fig, _ = oof_figure(read_predictions(exp["runs"]["b"], EMI), read_truth(exp["manifest"], EMI), EMI, title="Run b")
    titles = [ax.get_title() for ax in fig.axes]
    for target, value in scores.items():
        assert f"{target}: Pearson r {value:.3f}" in titles
    assert fig.get_suptitle() == "Run b: 39 OOF rows"


def test_oof_figure_of_a_run_without_out_of_fold_rows(emi_experiment, tmp_path):
    # a run of fold_scheme mix trains on every labelled clip: its oof.csv has the header only
    exp = emi_experiment
    empty = tmp_path / "oof.csv"
    pd.read_csv(exp["runs"]["b"][0]).iloc[:0].to_csv(empty, index=False)
    svg, tsv = tmp_path / "oof.svg", tmp_path / "oof.tsv"
    table = write_oof_figure([empty], exp["manifest"], task="emi", svg=svg, tsv=tsv, title="Run mix")
    parse_svg(svg)
    assert table.empty and read_tsv(tsv).empty
    fig, _ = oof_figure(read_predictions([empty], EMI), read_truth(exp["manifest"], EMI), EMI, title="Run mix")
    assert fig.get_suptitle() == "Run mix: 0 OOF rows"
    assert [ax.get_title() for ax in fig.axes] == [f"{t}: Pearson r n/a" for t in EMI_TARGETS]
    assert "no labelled row has an out-of-fold prediction" in [t.get_text() for t in fig.texts]


def _ccc(t, p):
    # Lin's concordance correlation, written out with population moments
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    return 2 * cov / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)


def test_per_frame_scatter_subsamples_to_max_points_and_scores_every_frame(tmp_path):
    spec = task_spec("va")
    rng = np.random.default_rng(3)
    n = 12_000
    truth = pd.DataFrame({"id": np.repeat([11, 12], n // 2), "frame": np.tile(np.arange(1, n // 2 + 1), 2)})
    truth[["valence", "arousal"]] = rng.uniform(-1, 1, (n, 2))
    pred = truth[["id", "frame"]].copy()
    pred[["valence", "arousal"]] = 0.5 * truth[["valence", "arousal"]].to_numpy() + rng.normal(0, 0.3, (n, 2))
    truth_path, pred_path = tmp_path / "frame_labels.csv.gz", tmp_path / "oof.csv"
    truth.to_csv(truth_path, index=False)
    pred.to_csv(pred_path, index=False)
    svg, tsv = tmp_path / "va.svg", tmp_path / "va.tsv"
    write_oof_figure([pred_path], truth_path, task="va", svg=svg, tsv=tsv, title="Run va")
    parse_svg(svg)
    points = read_tsv(tsv)
    assert list(points.columns) == ["target", "id", "frame", "truth", "prediction"]
    assert points.groupby("target").size().to_dict() == {"valence": 5000, "arousal": 5000}
    fig, _ = oof_figure(pred, truth, spec, title="Run va")
    assert fig.get_suptitle() == "Run va: 12000 OOF rows, 5000 drawn"
    titles = [ax.get_title() for ax in fig.axes]
    for target in ("valence", "arousal"):
        assert f"{target}: CCC {_ccc(truth[target].to_numpy(), pred[target].to_numpy()):.3f}" in titles


def test_action_unit_panels_give_sklearn_f1_and_class_histograms(tmp_path):
    spec = task_spec("au")
    rng = np.random.default_rng(5)
    n = 600
    truth = pd.DataFrame({"id": 1, "frame": np.arange(1, n + 1)})
    pred = truth.copy()
    for target in spec.targets:
        truth[target] = (rng.random(n) < 0.3).astype(float)
        pred[target] = np.clip(0.3 + 0.3 * truth[target] + rng.normal(0, 0.2, n), 0, 1)
    fig, bins = oof_figure(pred, truth, spec, title="AU")
    titles = [ax.get_title() for ax in fig.axes]
    for target in spec.targets:
        value = f1_score(truth[target], pred[target] >= 0.5)
        assert f"{target}: F1 {value:.3f}" in titles
        for label in (0, 1):
            part = bins[(bins["target"] == target) & (bins["label"] == label)]
            counts, _ = np.histogram(pred.loc[truth[target] == label, target], bins=np.linspace(0, 1, 11))
            assert part["frames"].tolist() == counts.tolist()
            assert part["share"].sum() == pytest.approx(1.0)
    assert {"label 0", "label 1"} <= legend_texts(fig)
    # the table beside the drawing is the same one
    truth_path, pred_path = tmp_path / "frame_labels.csv.gz", tmp_path / "oof.csv"
    truth.to_csv(truth_path, index=False)
    pred.to_csv(pred_path, index=False)
    write_oof_figure([pred_path], truth_path, task="au", svg=tmp_path / "au.svg", tsv=tmp_path / "au.tsv", title="AU")
    parse_svg(tmp_path / "au.svg")
    pd.testing.assert_frame_equal(read_tsv(tmp_path / "au.tsv"), bins, check_exact=False, atol=1e-5)


def test_learning_curves_draw_each_fold_and_break_at_missing_epochs(tmp_path):
    paths = []
    for k, monitored in enumerate(([0.9, 0.7, None, 0.6], [1.0, 0.8, 0.75, 0.7])):
        path = tmp_path / f"fold{k}" / "metrics.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"fold": k, "train_loss": [1.0, 0.8, 0.6, 0.5], "monitored": monitored,
                                    "best_epoch": 3}))
        paths.append(path)
    svg, tsv = tmp_path / "curves.svg", tmp_path / "curves.tsv"
    write_learning_curves(paths, svg=svg, tsv=tsv, title="Learning curves of run r")
    parse_svg(svg)
    table = read_tsv(tsv)
    assert table[["fold", "epoch"]].values.tolist() == [[0, 1], [0, 2], [0, 3], [0, 4], [1, 1], [1, 2], [1, 3], [1, 4]]
    assert table["train_loss"].tolist() == [1.0, 0.8, 0.6, 0.5] * 2
    assert np.isnan(table["monitored"][2]) and table["monitored"].drop(index=2).notna().all()
    assert table.loc[table["kept"], "epoch"].tolist() == [4, 4]  # best_epoch 3 is 0-based
    fig = learning_curves_figure([read_history(p) for p in paths], title="Learning curves of run r")
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    # fold 0's monitored loss misses epoch 3: the value is NaN, which breaks the line (no bridge)
    assert np.isnan(lines["fold 0 monitored"]).tolist() == [False, False, True, False]
    assert all(np.isfinite(lines[name]).all() for name in ("fold 0 train", "fold 1 train", "fold 1 monitored"))
    assert {"fold 0 train", "fold 0 monitored", "fold 1 train", "fold 1 monitored"} <= legend_texts(fig)
    assert read_history(paths[0])["monitored"][2] != read_history(paths[0])["monitored"][2]  # NaN


def test_learning_curves_say_when_the_monitored_loss_is_the_training_loss(tmp_path):
    history = {"fold": 0, "train_loss": [1.0, 0.5], "monitored": [1.0, 0.5], "best_epoch": 1}
    fig = learning_curves_figure([history], title="t")
    assert "fold 0 monitored (= train: no validation split)" in legend_texts(fig)


def test_bad_inputs_fail_naming_the_file(tmp_path, emi_experiment):
    bad = tmp_path / "oof_bad.csv"
    bad.write_text("id,Admiration\n1,0.5\n")
    with pytest.raises(ValueError, match=r"oof_bad\.csv: missing column"):
        read_predictions(bad, EMI)
    values = ",".join(["0.5"] * 6)
    bad.write_text("id," + ",".join(EMI_TARGETS) + f"\n1,{values}\nx,{values}\n")
    with pytest.raises(ValueError, match=r"oof_bad\.csv: line 3: id 'x' is not an integer"):
        read_predictions(bad, EMI)
    # the one checked reader of prediction tables (affectflow.keys): text and a key twice fail too
    bad.write_text("id," + ",".join(EMI_TARGETS) + f"\n1,{values}\n2,high,{values[4:]}\n")
    with pytest.raises(ValueError, match=r"oof_bad\.csv: line 3: Admiration 'high' is not a number"):
        read_predictions(bad, EMI)
    bad.write_text("id," + ",".join(EMI_TARGETS) + f"\n1,{values}\n1,{values}\n")
    with pytest.raises(ValueError, match=r"oof_bad\.csv: line 3: duplicate row for \{'id': 1\}"):
        read_predictions(bad, EMI)
    with pytest.raises(ValueError, match=r"none\.csv: prediction table not found"):
        read_predictions(tmp_path / "none.csv", EMI)
    with pytest.raises(ValueError, match=r"manifest\.tsv: missing column"):
        read_truth(emi_experiment["manifest"], task_spec("eri"))
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{\n  \"train_loss\": [1,\n")
    with pytest.raises(ValueError, match=r"metrics\.json: line 3: not valid JSON"):
        read_history(metrics)
    metrics.write_text("{}")
    with pytest.raises(ValueError, match=r"metrics\.json: no 'train_loss'"):
        learning_curves_figure([read_history(metrics)], title="x")


# -- the real workflow, its report, in a browser ----------------------------------------------


def report_figures(config: dict) -> list[str]:
    """The report figures rule all builds for ``config`` (model figures and data-quality plots)."""
    results = f"results/{config['dataset']['name']}"
    runs = list(config["train"]["runs"])
    return ([f"{results}/report/scores.svg", f"{results}/report/scores.tsv"]
            + [f"{results}/report/oof/run-{r}.svg" for r in runs]
            + [f"{results}/report/oof/ensemble-{config['ensemble']['name']}.svg"]
            + [f"{results}/report/learning_curves/{r}.svg" for r in runs]
            + [f"{results}/qc/{p}.svg" for p in QC_PLOTS])


@pytest.fixture(scope="module")
def rendered_report(tmp_path_factory):
    """The tiny demo run with every report figure, and `snakemake --report` of it."""
    from conftest import tiny_config, write_config

    workdir = tmp_path_factory.mktemp("report")
    config = tiny_config(workdir)
    configfile = str(write_config(workdir, config))
    # the default target (rule all) includes every report figure: the plain commands of the README
    run_snakemake(workdir, "--cores", "2", "--configfile", configfile)
    html = workdir / "results" / "report.html"
    run_snakemake(workdir, "--report", str(html), "--configfile", configfile)
    return workdir, config, html




def chrome(profile: Path):
    """Headless Chromium driven by Debian's chromedriver; never downloads a driver."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: run .ci/browser_deps.sh (installs Debian's chromium "
                    "and chromium-driver) to test the report in a browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def click_text(driver, text: str) -> None:
    """Click the navigation link whose label is ``text``."""
    from selenium.webdriver.common.by import By

    links = [a for a in driver.find_elements(By.CSS_SELECTOR, "nav a") if a.text.strip() == text]
    shown = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "nav a")]
    assert links, f"no link {text!r} in the report's navigation: {shown}"
    links[0].click()


