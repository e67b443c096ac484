"""The real Snakemake CLI for the tests of test_report.py (slow)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
import pytest
from test_report import (  # noqa: F401, F811  (helpers and fixtures shared with the unit tests)
    chrome,
    click_text,
    parse_svg,
    read_tsv,
    rendered_report,
    report_figures,
)


@pytest.mark.slow
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
            # the figure's numbers beside it
            assert len(read_tsv(workdir / Path(path).with_suffix(".tsv"))) > 0, path


@pytest.mark.slow
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
            size = wait.until(lambda d, uri=uri: d.execute_script(
                "const img = [...document.querySelectorAll('img')].find(i => i.src === arguments[0]);"
                "return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;",
                uri), message=f"{path}: the image did not load in the page")
            assert size[0] > 0 and size[1] > 0
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not severe, f"browser console errors: {severe}"
    finally:
        driver.quit()

