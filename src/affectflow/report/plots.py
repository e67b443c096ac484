"""Matplotlib drawing shared by the report and the data-quality figures.

Figures are built with matplotlib's object API (:class:`matplotlib.figure.Figure`, no pyplot and
no change to matplotlib's global state) and saved as SVG by :func:`save_svg`, which fixes the
SVG ids and drops the creation date so that a rerun writes identical bytes. Text stays text in
the SVG (``svg.fonttype: none``): the browser draws it, and it can be searched.

The helpers draw into a given :class:`~matplotlib.axes.Axes`: grouped bars (:func:`grouped_bars`),
one series of bars (:func:`bar_chart`), truth against prediction (:func:`truth_scatter`), the two
class histograms of a binary target (:func:`class_histograms`) and per-epoch curves
(:func:`epoch_curve`). Colours come from :func:`series_colours`: one distinct colour per series.
:func:`save_table` writes the numbers of a figure beside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, MultipleLocator

from affectflow.runtime.atomic import atomic_path

__all__ = [
    "CLASS_COLOURS",
    "PALETTE",
    "bar_chart",
    "class_histograms",
    "epoch_curve",
    "grouped_bars",
    "new_figure",
    "save_svg",
    "save_table",
    "series_colours",
    "truth_scatter",
]

# Okabe & Ito 2008: distinguishable with the common colour-vision deficiencies (their yellow
# is left out: it is hard to see on white).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
# Binary targets: frames labelled 0 (orange) and 1 (blue), as the OOF caption says.
CLASS_COLOURS = {0: "#E69F00", 1: "#0072B2"}
# Fixed SVG ids (hashed with this salt, not a random one) and text kept as text.
SVG_SETTINGS = {"svg.hashsalt": "affectflow", "svg.fonttype": "none"}
# More points than this are drawn as an embedded image: thousands of SVG markers make the
# report slow to open while adding nothing a reader can see.
RASTER_POINTS = 1000
RASTER_DPI = 150


def series_colours(count: int) -> list[str]:
    """``count`` distinct colours: the Okabe-Ito palette, or matplotlib's tab20 for more series."""
    if count <= len(PALETTE):
        return list(PALETTE[:count])
    cmap = matplotlib.colormaps["tab20"]
    return [matplotlib.colors.to_hex(cmap(i % cmap.N)) for i in range(count)]


def new_figure(width: float, height: float) -> Figure:
    """A white figure of ``width`` x ``height`` inches whose layout keeps labels and legends inside."""
    return Figure(figsize=(width, height), layout="constrained", facecolor="white")


def save_svg(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` as SVG, atomically and byte-identical on a rerun."""
    with matplotlib.rc_context(SVG_SETTINGS), atomic_path(path) as tmp:
        # dpi only sets the resolution of rasterized parts (dense scatters); the rest is vector.
        fig.savefig(tmp, format="svg", metadata={"Date": None}, dpi=RASTER_DPI)


def save_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a figure's numbers to ``path``, tab-separated (6 significant digits, NaN as ``NaN``)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="NaN")


def bar_chart(ax: Axes, labels: Sequence[str], values: Sequence[float], *, xlabel: str, ylabel: str,
              horizontal: bool = False, colour: str = PALETTE[0]) -> None:
    """One series of bars with its value written on each bar; ``horizontal`` for long labels."""
    positions = np.arange(len(labels))
    values = [float(v) for v in values]
    if horizontal:
        bars = ax.barh(positions, values, color=colour)
        ax.set_yticks(positions, [str(label) for label in labels])
        ax.invert_yaxis()  # the first category on top
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.grid(axis="x", color="#dddddd")
    else:
        bars = ax.bar(positions, values, color=colour)
        rotate = max((len(str(label)) for label in labels), default=0) > 5 or len(labels) > 8
        ax.set_xticks(positions, [str(label) for label in labels], rotation=35 if rotate else 0,
                      ha="right" if rotate else "center")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.grid(axis="y", color="#dddddd")
    ax.set_axisbelow(True)
    ax.bar_label(bars, labels=[f"{v:g}" for v in values], padding=2, fontsize=8)
    top = max(values, default=0.0)
    # Headroom for the value labels; at least 0-2 so that small counts still get three ticks.
    limit = (0, max(top * 1.12, 2.0))
    (ax.set_xlim if horizontal else ax.set_ylim)(*limit)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def grouped_bars(ax: Axes, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
                 colours: Sequence[str], *, hatches: Sequence[str], ylim: tuple[float, float]) -> None:
    """Bars grouped by ``groups``: one bar per series in each group, with that series' colour.

    ``series`` holds (label, one value per group); a value outside ``ylim`` is drawn at the
    limit, and an undefined one (NaN) as the text "n/a" with no bar. The bars of series ``i``
    are ``ax.containers[i]``, one rectangle per group.
    """
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(groups))
    for i, ((label, values), colour, hatch) in enumerate(zip(series, colours, hatches, strict=True)):
        values = np.asarray(values, dtype=float)
        x = positions - 0.4 + (i + 0.5) * width
        shown = np.where(np.isfinite(values), np.clip(values, *ylim), 0.0)
        ax.bar(x, shown, width * 0.95, color=colour, hatch=hatch, edgecolor="white" if hatch else colour,
               linewidth=0.0, label=label)
        for xi in x[~np.isfinite(values)]:
            ax.text(xi, 0.01 * (ylim[1] - ylim[0]), "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(positions, list(groups), rotation=35, ha="right")
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(*ylim)
    ax.yaxis.set_major_locator(MultipleLocator(0.1 if ylim[1] - ylim[0] <= 1 else 0.25))
    ax.grid(axis="y", color="#dddddd")
    ax.set_axisbelow(True)


def truth_scatter(ax: Axes, truth: np.ndarray, pred: np.ndarray, *, low: float, high: float) -> None:
    """Prediction against truth, one dot each, with the identity line; equal axes over [low, high]."""
    pad = 0.03 * (high - low)
    ax.plot([low, high], [low, high], color="#999999", linestyle="--", linewidth=1, label="prediction = truth")
    # Smaller, fainter dots where many overlap, so that density stays visible.
    size, alpha = (4, 0.6) if len(truth) <= 500 else (2, 0.3)
    ax.plot(truth, pred, linestyle="none", marker="o", markersize=size, alpha=alpha, color=PALETTE[0],
            markeredgewidth=0, rasterized=len(truth) > RASTER_POINTS, label="one OOF row")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.grid(color="#eeeeee")
    ax.set_axisbelow(True)


def class_histograms(ax: Axes, edges: np.ndarray, shares: dict[int, np.ndarray], *, threshold: float) -> None:
    """Side-by-side bars of the share of frames per probability bin, for truth 0 and truth 1."""
    width = np.diff(edges) / 2
    for offset, label in enumerate((0, 1)):
        ax.bar(edges[:-1] + offset * width, shares[label], width, align="edge", color=CLASS_COLOURS[label],
               alpha=0.85, label=f"label {label}")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(0.05, float(max(shares[0].max(initial=0), shares[1].max(initial=0)))) * 1.05)
    ax.xaxis.set_major_locator(MultipleLocator(0.25))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.grid(axis="y", color="#eeeeee")
    ax.set_axisbelow(True)


def epoch_curve(ax: Axes, values: Sequence[float], *, colour: str, dashed: bool, label: str) -> None:
    """One value per epoch (epoch 1 first); a NaN breaks the line rather than bridging the gap."""
    epochs = np.arange(1, len(values) + 1)
    ax.plot(epochs, np.asarray(values, dtype=float), color=colour, linestyle="--" if dashed else "-",
            marker="o", markersize=3, linewidth=1.5, label=label)
