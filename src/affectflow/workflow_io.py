"""What the thin workflow scripts share: logging to the rule's log file."""

from __future__ import annotations

import logging
import os


def setup_logging(log_path: str | os.PathLike | None) -> logging.Logger:
    """Send the package's log records (INFO and up) to the rule's ``log:`` file."""
    handler: logging.Handler = logging.FileHandler(log_path) if log_path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("affectflow")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger
