"""The error every ensemble step raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from affectflow.keys import TableError


class EnsembleError(ValueError):
    """Bad input to an ensemble: the message names the file (and line) or member and the reason."""


@contextmanager
def ensemble_errors() -> Iterator[None]:
    """Re-raise a keyed table's :class:`~affectflow.keys.TableError` as :class:`EnsembleError`, message unchanged."""
    try:
        yield
    except TableError as exc:
        raise EnsembleError(str(exc)) from None
