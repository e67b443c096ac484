"""The report's figures (scores, OOF predictions, learning curves) and the rendered report.

Unit tests check the figures' numbers against scipy / scikit-learn on tables written here. The
end-to-end test runs the real workflow on the tiny demo set, builds `snakemake --report` and opens
it in headless Chromium (Debian's chromium + chromium-driver: `.ci/browser_deps.sh` installs them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import f1_score

from affectflow.report.figures import (
    learning_curves_svg,
    oof_svg,
    read_history,
    read_predictions,
    read_truth,
    write_learning_curves,
    write_oof_figure,
    write_score_figure,
)
from affectflow.tasks import EMI_TARGETS, task_spec

from conftest import run_snakemake
from test_workflow import tiny_config, write_config

SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
EMI = task_spec("emi")


def parse_svg(path_or_text) -> ET.Element:
    """The root of a well-formed SVG document with a positive size."""
    text = Path(path_or_text).read_text() if isinstance(path_or_text, Path) else path_or_text
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    return root


def svg_texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


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
    write_score_figure(exp["runs"], {"late_mean": exp["ensemble"]}, exp["manifest"], spec=EMI, svg=svg, tsv=tsv)
    root = parse_svg(svg)
    bars = {(r.get("data-source"), r.get("data-target")): r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"}
    expected = expected_bars(exp)
    assert set(bars) == set(expected)
    zero = next(float(line.get("y1")) for line in root.iter(f"{SVG}line")
                if line.get("stroke") == "black" and line.get("y1") == line.get("y2"))
    scale = []
    for key, value in expected.items():
        bar = bars[key]
        assert float(bar.get("data-value")) == pytest.approx(value, abs=1e-5), key
        top, height = float(bar.get("y")), float(bar.get("height"))
        # positive scores rise from the zero line, negative ones hang below it
        assert (top + height if value >= 0 else top) == pytest.approx(zero, abs=0.01), key
        scale.append(height / abs(value))
    # one pixel scale for every bar: heights are proportional to the scores
    assert max(scale) - min(scale) < 0.05 * np.mean(scale)
    table = pd.read_csv(tsv, sep="\t")
    pooled_b = table[(table["source"] == "b") & (table["aggregate"] == "pooled")].iloc[0]
    b = pd.concat([pd.read_csv(p) for p in exp["runs"]["b"]])
    for t, v in scipy_scores(b, exp["truth"]).items():
        assert pooled_b[t] == pytest.approx(v, abs=1e-5)
    assert pooled_b["n"] == 39  # 40 labelled clips, one without a prediction


def test_oof_scatter_draws_every_clip_and_titles_scipy_scores(emi_experiment, tmp_path):
    exp = emi_experiment
    svg = tmp_path / "oof.svg"
    write_oof_figure(exp["runs"]["b"], exp["manifest"], spec=EMI, svg=svg, title="Run b")
    root = parse_svg(svg)
    points = {p.get("data-target"): p for p in root.iter(f"{SVG}path") if p.get("class") == "points"}
    assert set(points) == set(EMI_TARGETS)
    for target, path in points.items():
        assert int(path.get("data-n")) == 39
        assert len(re.findall(r"M[-\d.]+ [-\d.]+h0", path.get("d"))) == 39
    scores = scipy_scores(pd.concat([pd.read_csv(p) for p in exp["runs"]["b"]]), exp["truth"])
    texts = svg_texts(root)
    for target, value in scores.items():
        assert f"{target}  Pearson r {value:.3f}" in texts
    assert "Run b: 39 OOF rows" in texts


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
    svg = tmp_path / "va.svg"
    write_oof_figure([pred_path], truth_path, spec=spec, svg=svg, title="Run va")
    root = parse_svg(svg)
    for path in (p for p in root.iter(f"{SVG}path") if p.get("class") == "points"):
        assert len(re.findall(r"h0", path.get("d"))) == 5000
    texts = svg_texts(root)
    assert "Run va: 12000 OOF rows, 5000 drawn" in texts
    for target in ("valence", "arousal"):
        assert f"{target}  CCC {_ccc(truth[target].to_numpy(), pred[target].to_numpy()):.3f}" in texts


def test_action_unit_panels_give_sklearn_f1_and_class_histograms(tmp_path):
    spec = task_spec("au")
    rng = np.random.default_rng(5)
    n = 600
    truth = pd.DataFrame({"id": 1, "frame": np.arange(1, n + 1)})
    pred = truth.copy()
    for target in spec.targets:
        truth[target] = (rng.random(n) < 0.3).astype(float)
        pred[target] = np.clip(0.3 + 0.3 * truth[target] + rng.normal(0, 0.2, n), 0, 1)
    root = parse_svg(oof_svg(pred, truth, spec, title="AU"))
    texts = svg_texts(root)
    for target in spec.targets:
        value = f1_score(truth[target], pred[target] >= 0.5)
        assert f"{target}  F1 {value:.3f}" in texts
    assert {"label 0", "label 1"} <= set(texts)


def test_learning_curves_draw_each_fold_and_break_at_missing_epochs(tmp_path):
    paths = []
    for k, monitored in enumerate(([0.9, 0.7, None, 0.6], [1.0, 0.8, 0.75, 0.7])):
        path = tmp_path / f"fold{k}" / "metrics.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"fold": k, "train_loss": [1.0, 0.8, 0.6, 0.5], "monitored": monitored,
                                    "best_epoch": 3}))
        paths.append(path)
    svg = tmp_path / "curves.svg"
    write_learning_curves(paths, svg=svg, title="Learning curves of run r")
    root = parse_svg(svg)
    lines = [p for p in root.iter(f"{SVG}polyline") if p.get("class") == "curve"]
    lengths = sorted((p.get("data-series"), len(p.get("points").split())) for p in lines)
    # fold 0's monitored loss misses epoch 3: two pieces (2 points, and 1 point drawn as a dot)
    assert lengths == [("monitored", 2), ("monitored", 4), ("train_loss", 4), ("train_loss", 4)]
    texts = svg_texts(root)
    assert {"fold 0 train", "fold 0 monitored", "fold 1 train", "fold 1 monitored"} <= set(texts)
    assert read_history(paths[0])["monitored"][2] != read_history(paths[0])["monitored"][2]  # NaN


def test_bad_inputs_fail_naming_the_file(tmp_path, emi_experiment):
    bad = tmp_path / "oof_bad.csv"
    bad.write_text("id,Admiration\n1,0.5\n")
    with pytest.raises(ValueError, match=r"oof_bad\.csv: missing column"):
        read_predictions(bad, EMI)
    bad.write_text("id," + ",".join(EMI_TARGETS) + "\n1," + ",".join(["0.5"] * 6) + "\nx," + ",".join(["0.5"] * 6) + "\n")
    with pytest.raises(ValueError, match=r"oof_bad\.csv: line 3: id 'x' is not an integer"):
        read_predictions(bad, EMI)
    with pytest.raises(ValueError, match=r"manifest\.tsv: missing column"):
        read_truth(emi_experiment["manifest"], task_spec("eri"))
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{\n  \"train_loss\": [1,\n")
    with pytest.raises(ValueError, match=r"metrics\.json: line 3: not valid JSON"):
        read_history(metrics)
    metrics.write_text("{}")
    with pytest.raises(ValueError, match=r"metrics\.json: no 'train_loss'"):
        learning_curves_svg([read_history(metrics)], title="x")


# -- the real workflow, its report, in a browser ----------------------------------------------


def report_figures(config: dict) -> list[str]:
    """REPORT_FIGURES of workflow/rules/report.smk for ``config``, and the data-quality plots."""
    results = f"results/{config['dataset']['name']}"
    runs = list(config["train"]["runs"])
    return ([f"{results}/report/scores.svg", f"{results}/report/scores.tsv"]
            + [f"{results}/report/oof/run-{r}.svg" for r in runs]
            + [f"{results}/report/oof/ensemble-{config['ensemble']['name']}.svg"]
            + [f"{results}/report/learning_curves/{r}.svg" for r in runs]
            + [f"{results}/qc/{p}.svg" for p in ("durations", "frame_rates", "face_rate", "qc_reasons")])


@pytest.fixture(scope="module")
def rendered_report(tmp_path_factory):
    """The tiny demo run with every report figure, and `snakemake --report` of it."""
    workdir = tmp_path_factory.mktemp("report")
    config = tiny_config(workdir)
    configfile = str(write_config(workdir, config))
    # the default target (rule all) includes every report figure: the plain commands of the README
    run_snakemake(workdir, "--cores", "2", "--configfile", configfile)
    html = workdir / "results" / "report.html"
    run_snakemake(workdir, "--report", str(html), "--configfile", configfile)
    return workdir, config, html


def test_report_rules_write_the_figures_of_every_run_and_the_ensemble(rendered_report):
    workdir, config, _ = rendered_report
    results = workdir / "results" / "demo"
    table = pd.read_csv(results / "report" / "scores.tsv", sep="\t")
    compared = [f"compare-{m}" for m in config["ensemble"]["compare"]]
    assert compared  # the default config compares further ensemble methods
    assert sorted(table["source"].unique()) == sorted([*config["train"]["runs"], "late_mean", *compared])
    # each ensemble's pooled OOF score is the one the ensemble stage computed itself
    for name in ["late_mean", *compared]:
        score = json.loads((results / "ensemble" / name / "score.json").read_text())["oof"]
        ensemble = table[table["source"] == name].iloc[0]
        for target, value in score["per_target"].items():
            assert ensemble[target] == pytest.approx(value, abs=1e-5), (name, target)
    # "best" puts all the weight of each target on one member
    best = json.loads((results / "ensemble" / "compare-best" / "members.json").read_text())
    assert best["method"] == "best"
    assert all(sorted(w.values()) == [0.0, 1.0] for w in best["weights"].values())
    for path in report_figures(config):
        if path.endswith(".svg"):
            parse_svg(workdir / path)


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
    assert links, f"no link {text!r} in the report's navigation: {[a.text for a in driver.find_elements(By.CSS_SELECTOR, 'nav a')]}"
    links[0].click()


def test_report_page_shows_every_figure_as_an_image_without_errors(rendered_report, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    workdir, config, html = rendered_report
    assert html.stat().st_size > 0
    driver = chrome(tmp_path / "chromium-profile")
    try:
        wait = WebDriverWait(driver, 20)
        url = html.resolve().as_uri()
        driver.get(url)
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('nav a').length") > 0)
        results = driver.execute_script("return results")
        categories = driver.execute_script("return categories")
        where = {path: (cat, sub) for cat, subs in categories.items() for sub, paths in subs.items() for path in paths}
        figures = [p for p in report_figures(config) if p.endswith(".svg")]
        for path in figures:
            assert path in results, f"{path} is not in the report (results: {sorted(results)})"
            entry = results[path]
            assert entry["caption"].strip(), f"{path} has no caption"
            header, _, payload = entry["data_uri"].partition(";base64,")
            assert header.startswith("data:image/svg+xml")
            assert base64.b64decode(payload) == (workdir / path).read_bytes()
        for path in figures:
            # Click through as a reader would: the category, its subcategory, the figure's view button.
            driver.get(url)
            wait.until(lambda d: d.execute_script("return document.querySelectorAll('nav a').length") > 0)
            category, subcategory = where[path]
            click_text(driver, category)
            if len(categories[category]) > 1:
                click_text(driver, subcategory)
            labels = results[path]["labels"]
            row_text = list(labels.values()) if labels else [path]
            rows = [r for r in driver.find_elements(By.CSS_SELECTOR, "nav tbody tr")
                    if [td.text.strip() for td in r.find_elements(By.TAG_NAME, "td")][:-1] == row_text]
            assert len(rows) == 1, f"{path}: no single row {row_text} under {category} / {subcategory}"
            rows[0].find_elements(By.CSS_SELECTOR, "td:last-child a")[0].click()
            uri = results[path]["data_uri"]
            size = wait.until(lambda d: d.execute_script(
                "const img = [...document.querySelectorAll('img')].find(i => i.src === arguments[0]);"
                "return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;",
                uri), message=f"{path}: the image did not load in the page")
            assert size[0] > 0 and size[1] > 0
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not severe, f"browser console errors: {severe}"
    finally:
        driver.quit()
