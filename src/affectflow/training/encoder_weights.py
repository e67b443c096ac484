"""Where a fine-tuning run's encoder starts: the weights of the backbone entry the run names.

A fine-tuning run (``model: finetune``) names a features entry as its ``backbone`` (e.g.
``resnet18_pool512: {weights: resnet18_affectnet}``); its encoder starts from that entry's weights
(:func:`affectflow.config.runs.finetune_weights`), so the user's checkpoint is configured once for
the frozen and the fine-tuned runs alike. A run that gives the encoder's weights parameter itself
(``model_params.encoder_params``) keeps its own.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

from affectflow.features.weights import resolve_weights
from affectflow.models.finetune import ENCODERS
from affectflow.training.recipes import resolve_run

__all__ = ["with_encoder_weights"]

log = logging.getLogger(__name__)


def with_encoder_weights(run: Mapping, weights: str) -> dict:
    """The run with its encoder's weights parameter set to ``weights`` resolved to a local file or
    directory (:func:`~affectflow.features.weights.resolve_weights`: a missing file fails naming it),
    unless the run or its recipe sets it. ``weights`` "": the run as it is (random initialisation)."""
    run = copy.deepcopy(dict(run))
    params = resolve_run(run).get("model_params", {})
    encoder = params.get("encoder")
    if encoder not in ENCODERS:
        raise ValueError(f"a fine-tuning run's model_params.encoder must be one of "
                         f"{', '.join(sorted(ENCODERS))}, not {encoder!r}")
    encoder_params = dict(params.get("encoder_params") or {})
    key = ENCODERS[encoder][0].weights_param
    if encoder_params.get(key):
        return run
    if not weights:
        log.warning("encoder %s starts from random weights: its backbone entry names none", encoder)
        return run
    encoder_params[key] = str(resolve_weights(weights))
    # the whole encoder_params: a run's model_params replace its recipe's key by key
    run["model_params"] = {**run.get("model_params", {}), "encoder_params": encoder_params}
    return run
