"""Timeline plots of predicted videos and the HTML page of a set: what each plot shows (shaded
frames without a face, bar lengths, the reason when nothing was predicted), that a 20-minute
video stays a small SVG, and that the page is self-contained and works in a real browser."""

from __future__ import annotations

import html
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.image import AxesImage

from affectflow.predict.page import (
    MAX_LINE_POINTS,
    no_face_spans,
    timeline_figure,
    write_predict_page,
    write_timeline_svg,
)
from affectflow.report.plots import save_svg
from affectflow.tasks import AU_TARGETS, task_spec

FPS = 10
NAN = float("nan")


def timeline(n: int, gaps: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames at :data:`FPS`; no face in the frame ranges ``gaps`` (start, stop exclusive)."""
    face = np.ones(n, dtype=bool)
    for start, stop in gaps:
        face[start:stop] = False
    return np.arange(n) / FPS, face


def va_values(times: np.ndarray, face: np.ndarray) -> pd.DataFrame:
    values = pd.DataFrame({"time_s": times, "valence": 0.8 * np.sin(times), "arousal": 0.5 * np.cos(times / 3)})
    values.loc[~face, ["valence", "arousal"]] = np.nan  # no face, no prediction
    return values


def no_face_bands(fig) -> list[PolyCollection]:
    return [c for ax in fig.axes for c in ax.collections if c.get_label() == "no face"]


def band_x_extents(band: PolyCollection) -> list[tuple[float, float]]:
    return sorted((float(p.vertices[:, 0].min()), float(p.vertices[:, 0].max())) for p in band.get_paths())


def test_no_face_spans_merge_consecutive_frames():
    times, face = timeline(20, [(0, 3), (5, 6), (17, 20)])
    # a frame lasts until the next one starts; the last one for the frame step (0.1 s)
    np.testing.assert_allclose(no_face_spans(times, face), [(0.0, 0.3), (0.5, 0.6), (1.7, 2.0)])
    assert no_face_spans(times, np.ones(20, dtype=bool)) == []


def test_va_timeline_shades_no_face_gaps_and_draws_both_targets():
    times, face = timeline(100, [(30, 50), (95, 100)])
    fig = timeline_figure(title="clip", task="va", times_s=times, face=face, values=va_values(times, face))
    (band,) = no_face_bands(fig)  # one collection for every gap, not one patch per frame
    # the gaps are 3.0-4.9 s and 9.5-9.9 s (frames of 0.1 s): covered, and not a frame more
    np.testing.assert_allclose(band_x_extents(band), [(3.0, 5.0), (9.5, 10.0)])
    ax = fig.axes[0]
    # the band spans the axes' full height (y in axes units), whatever the data
    assert band.get_transform() == ax.get_xaxis_transform()
    assert {float(y) for p in band.get_paths() for y in p.vertices[:, 1]} == {0.0, 1.0}
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == \
        ["valence", "arousal"]
    assert ax.get_ylim()[0] <= -1 and ax.get_ylim()[1] >= 1
    assert ax.get_ylim()[1] - ax.get_ylim()[0] < 2.5
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no face" in legend and "valence" in legend


def test_clip_timeline_bars_equal_values(tmp_path):
    values = {"Admiration": 0.25, "Amusement": NAN, "Determination": 0.0, "Empathic Pain": 1.0,
              "Excitement": 0.5, "Joy": 0.125}
    times, face = timeline(50, [(10, 20)])
    fig = timeline_figure(title="clip", task="emi", times_s=times, face=face, values=values)
    bar_ax, strip_ax = fig.axes
    widths = [bar.get_width() for bar in bar_ax.containers[0]]
    assert widths == pytest.approx([0.25, 0.0, 0.0, 1.0, 0.5, 0.125])  # NaN: no bar ...
    labels = [t.get_text() for t in bar_ax.texts]
    assert labels[1] == "n/a" and labels[0] == "0.250"  # ... and "n/a" written instead
    assert [t.get_text() for t in bar_ax.get_yticklabels()] == list(task_spec("emi").targets)
    assert bar_ax.get_xlim()[0] == 0 and bar_ax.get_xlim()[1] >= 1
    (band,) = no_face_bands(fig)
    assert band.axes is strip_ax
    np.testing.assert_allclose(band_x_extents(band), [(1.0, 2.0)])
    save_svg(fig, tmp_path / "clip.svg")
    ET.parse(tmp_path / "clip.svg")


def test_eri_bars_follow_eri_targets():
    spec = task_spec("eri")
    values = {t: i / 10 for i, t in enumerate(spec.targets)}
    times, face = timeline(10, [])
    fig = timeline_figure(title="clip", task="eri", times_s=times, face=face, values=values)
    assert [b.get_width() for b in fig.axes[0].containers[0]] == pytest.approx(list(values.values()))
    assert no_face_bands(fig) == []  # a face in every frame: nothing shaded


def test_au_timeline_is_a_heatmap_of_means_with_gaps_shaded():
    times, face = timeline(40, [(20, 30)])
    values = pd.DataFrame({"time_s": times, **{au: np.zeros(40) for au in AU_TARGETS}})
    values["AU12"] = (np.arange(40) % 2).astype(float)  # half the frames: 0.5 per bin of 2 frames
    values.loc[~face, list(AU_TARGETS)] = np.nan
    fig = timeline_figure(title="clip", task="au", times_s=times, face=face, values=values)
    ax = fig.axes[0]
    (image,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    grid = np.ma.filled(image.get_array().astype(float), np.nan)
    assert grid.shape[0] == len(AU_TARGETS)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(AU_TARGETS)
    columns = grid.shape[1]
    no_face = np.arange(columns) * (4.0 / columns)  # column start times over 0-4 s
    gap = (no_face >= 2.0) & (no_face < 3.0)
    assert np.isnan(grid[:, gap]).all() and np.isfinite(grid[:, ~gap]).all()
    assert np.nanmax(grid[AU_TARGETS.index("AU12")]) > 0 and np.nanmax(grid[0]) == 0
    (band,) = no_face_bands(fig)
    np.testing.assert_allclose(band_x_extents(band), [(2.0, 3.0)])
    assert band.get_zorder() > image.get_zorder()  # drawn over the image, not hidden by it


@pytest.mark.parametrize(("task", "times", "values", "reason"), [
    ("va", np.array([]), None, "cannot decode video"),
    ("va", np.arange(20) / FPS, "all-nan", "no face found in any frame"),
    ("emi", np.arange(20) / FPS, {t: NAN for t in task_spec("emi").targets}, "no face found in any frame"),
    ("au", np.arange(20) / FPS, None, "model <missing> & \"quoted\""),
])
def test_no_prediction_figure_shows_reason(tmp_path, task, times, values, reason):
    face = np.zeros(len(times), dtype=bool)
    if isinstance(values, str):
        values = pd.DataFrame({"time_s": times, "valence": np.nan, "arousal": np.nan})
    path = tmp_path / "none.svg"
    write_timeline_svg(path, title="broken.mp4", task=task, times_s=times, face=face, values=values, reason=reason)
    root = ET.parse(path).getroot()  # still a valid SVG
    text = " ".join("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    assert reason in text and "broken.mp4" in text
    if len(times):  # the face timeline is still shown: all grey here
        assert "no face" in text


def test_long_va_timeline_svg_is_small(tmp_path):
    n = 20 * 60 * 30  # 20 minutes at 30 fps
    times = np.arange(n) / 30
    face = np.ones(n, dtype=bool)
    face[3000:6000] = face[20000:20010] = False
    rng = np.random.default_rng(0)
    values = pd.DataFrame({"time_s": times, "valence": np.clip(rng.normal(0, 0.3, n), -1, 1),
                           "arousal": np.sin(times / 20)})
    values.loc[~face, ["valence", "arousal"]] = np.nan
    values.loc[12345, "valence"] = 1.0  # a one-frame peak: min/max binning must keep it
    fig = timeline_figure(title="long", task="va", times_s=times, face=face, values=values)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    for target in ("valence", "arousal"):
        y = lines[target].get_ydata()
        assert len(y) <= MAX_LINE_POINTS
        assert np.isnan(y).any()  # the no-face gap still breaks the line
    assert np.nanmax(lines["valence"].get_ydata()) == 1.0
    path = tmp_path / "long.svg"
    save_svg(fig, path)
    assert path.stat().st_size < 1_500_000, path.stat().st_size
    ET.parse(path)


def test_flickering_face_detector_keeps_svg_small(tmp_path):
    n = 36_000
    times, face = np.arange(n) / 30, np.arange(n) % 2 == 0  # a face in every other frame
    values = pd.DataFrame({"time_s": times, "valence": 0.1, "arousal": -0.1})
    path = tmp_path / "flicker.svg"
    write_timeline_svg(path, title="flicker", task="va", times_s=times, face=face, values=values)
    assert path.stat().st_size < 1_500_000, path.stat().st_size


# -- the page ---------------------------------------------------------------------------------

ODD_NAME = 'a<b>&"c'


class Page(HTMLParser):
    """The summary rows (cell texts and links), the section ids and the svg count of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[list[str]] = []
        self.sections: list[str] = []
        self.svgs = 0
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append([])
            self.links.append([])
        elif tag == "td":
            self._cell = []
        elif tag == "a" and self._cell is not None:
            self.links[-1].append(attrs["href"])
        elif tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "svg":
            self.svgs += 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td":
            self.rows[-1].append("".join(self._cell))
            self._cell = None


@pytest.fixture
def page(tmp_path) -> tuple[Path, list[dict]]:
    """A page of three VA videos (one named ``a<b>&"c``, one undecodable) in ``out/page/``, its csv
    and svg files in ``out/videos/`` (a folder beside the page's)."""
    videos_dir = tmp_path / "out" / "videos"
    videos_dir.mkdir(parents=True)
    items = []
    for name, n, gaps, reason in [(ODD_NAME, 40, [(0, 10)], ""), ("clip two.mp4", 30, [], ""),
                                  ("broken.mp4", 0, [], "cannot decode video")]:
        times, face = timeline(n, gaps)
        values = va_values(times, face) if n else None
        stem = f"video{len(items)}"
        csv, svg = videos_dir / f"{stem} x.csv", videos_dir / f"{stem}.svg"
        (values if values is not None else pd.DataFrame()).to_csv(csv, index=False)
        write_timeline_svg(svg, title=name, task="va", times_s=times, face=face, values=values, reason=reason)
        means = {t: float(values[t].mean()) if values is not None else NAN for t in ("valence", "arousal")}
        items.append({"video": name, "status": "ok" if n else "unreadable", "reason": reason, "frames": n,
                      "face_frames": int(face.sum()), "means": means, "csv": str(csv), "svg": str(svg)})
    out = tmp_path / "out" / "page" / "index.html"
    write_predict_page(out, title="Predictions <va>", task="va", videos=items)
    return out, items


def test_page_summary_rows_escaping_links_and_inline_svgs(page):
    out, items = page
    text = out.read_text()
    parsed = Page(text)
    rows = [r for r in parsed.rows if r]  # the header row has th cells only
    assert len(rows) == len(items)
    assert [r[0] for r in rows] == [v["video"] for v in items]
    assert ODD_NAME not in text and html.escape(ODD_NAME) in text
    assert "Predictions &lt;va&gt;" in text
    # video, status, reason, frames, face %, valence mean, arousal mean, csv
    assert rows[0][1:5] == ["ok", "", "40", "75.0"]
    assert rows[1][4] == "100.0"
    assert rows[2][1:7] == ["unreadable", "cannot decode video", "0", "", "", ""]
    for row, item in zip(rows[:2], items[:2], strict=True):
        assert row[5:7] == [f"{item['means'][t]:.3f}" for t in ("valence", "arousal")]
    for links, item in zip(parsed.links[1:], items, strict=True):
        anchor, csv = links
        assert anchor[1:] in parsed.sections
        assert not Path(unquote(csv)).is_absolute() and ":" not in csv
        assert (out.parent / unquote(csv)).resolve() == Path(item["csv"]).resolve()
    assert parsed.sections == ["video-1", "video-2", "video-3"]
    assert parsed.svgs == len(items) and "<?xml" not in text and "<!DOCTYPE svg" not in text
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # the plots' ids do not collide on one page
    for ref in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', text):
        assert (ref[0] or ref[1]) in ids
    assert "3 videos: 2 predicted, 1 without prediction" in text


def test_page_in_browser(page, tmp_path):
    from selenium.webdriver.common.by import By
    from test_report import chrome  # Debian's chromium; fails (not skips) when it is missing

    out, items = page
    driver = chrome(tmp_path / "profile")
    try:
        driver.get(out.as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "table.summary tbody tr")
        assert len(rows) == len(items) and all(row.is_displayed() for row in rows)
        assert rows[0].find_element(By.CSS_SELECTOR, "td").text == ODD_NAME
        svgs = driver.find_elements(By.CSS_SELECTOR, "section .plot svg")
        assert len(svgs) == len(items)
        for svg in svgs:
            box = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                        "return [r.width, r.height];", svg)
            assert box[0] > 0 and box[1] > 0, box
        rows[2].find_element(By.CSS_SELECTOR, "td a").click()
        assert driver.execute_script("return location.hash") == "#video-3"
        section = driver.find_element(By.ID, "video-3")
        assert section.is_displayed() and "cannot decode video" in section.text
        top = driver.execute_script("return arguments[0].getBoundingClientRect().top", section)
        assert math.isclose(top, 0, abs_tol=5) or driver.execute_script(
            "return window.innerHeight + window.scrollY >= document.body.scrollHeight - 2")
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        driver.quit()


def test_dollar_signs_in_names_and_reasons_are_text_not_maths(tmp_path):
    # matplotlib reads "$...$" as maths and fails on "price $5_$10": a video name must never do that
    for values, reason in ((None, "cannot open /v/$HOME/x.mp4"), ({t: 0.5 for t in task_spec("emi").targets}, "")):
        path = tmp_path / "dollar.svg"
        write_timeline_svg(path, title="price $5_$10", task="emi", times_s=np.arange(3) / 30.0,
                           face=np.ones(3, bool), values=values, reason=reason)
        text = path.read_text()
        assert "price $5_$10" in text and reason in text
