"""What the thin workflow scripts share: logging to the rule's log file."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(log_path: str | os.PathLike | None) -> logging.Logger:
    """Send the package's log records (INFO and up) to the rule's ``log:`` file.

    An exception that ends the script is written there too (then re-raised as usual), so the
    log Snakemake points at after a failed job holds the reason, not only the progress lines.
    """
    handler: logging.Handler = logging.FileHandler(log_path) if log_path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("affectflow")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    previous = sys.excepthook

    def log_then_raise(kind, value, traceback):
        logger.error("job failed: %s: %s", kind.__name__, value, exc_info=(kind, value, traceback))
        previous(kind, value, traceback)

    sys.excepthook = log_then_raise
    return logger
