"""The error every submission step raises, and how its messages list offending keys."""

from __future__ import annotations

from collections.abc import Iterable

#: How many offending keys an error or warning lists before "... (N in all)".
SHOW = 5


class SubmissionError(ValueError):
    """A submission cannot be written or is malformed; the message names the problem."""


def first_few(items: Iterable) -> str:
    """The first :data:`SHOW` items, comma-separated, then how many there are in all."""
    items = list(items)
    more = f" ... ({len(items)} in all)" if len(items) > SHOW else ""
    return ", ".join(str(i) for i in items[:SHOW]) + more
