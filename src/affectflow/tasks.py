"""Targets and file formats of the ABAW tasks (see REFERENCE.md)."""

from __future__ import annotations

EMI_TARGETS: tuple[str, ...] = (
    "Admiration",
    "Amusement",
    "Determination",
    "Empathic Pain",  # the space is part of the organisers' header
    "Excitement",
    "Joy",
)
EMI_ID_COLUMN = "Filename"
EMI_HEADER: tuple[str, ...] = (EMI_ID_COLUMN, *EMI_TARGETS)


def emi_media_name(clip_id: int) -> str:
    """File name of a Hume-Vidmimic2 clip under ``raw/``: the id zero-padded to five digits."""
    return f"{int(clip_id):05d}.mp4"
