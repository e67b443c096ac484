"""Shrink a paper recipe (``config/recipes/*.yaml``) to run on a tiny fixture in minutes on a CPU.

Only sizes change: the data set root, shard and fold counts, epochs, model widths, and the
backbones' weights (tiny random models of the same classes, see
:func:`affectflow.features.testing.tiny_backbone_params`). Every stage, model family, fusion,
fold scheme, ensemble method and submission writer is the recipe's own, so CI runs each recipe
through the same code path a full run takes.
"""

from __future__ import annotations

import copy
from pathlib import Path

from affectflow.features.registry import BACKBONES
from affectflow.features.signature import SIGNATURE_KEYS
from affectflow.features.testing import tiny_backbone_params
from affectflow.training.recipes import resolve_run

# Model widths for the tiny runs; only keys the recipe's model already takes are replaced.
SMALL_MODEL_PARAMS = {
    "dim": 16, "hidden": 16, "fusion_dim": 16, "layers": 1, "tcn_layers": 2, "heads": 2, "rnn_layers": 1,
    "head_hidden": [16], "spatial_layers": 1,
}
SMALL_TRAINING = {"epochs": 2, "batch_size": 4}
# A fine-tuning run's encoder and inputs: 4 frames of 32 px crops, one spatial Transformer block.
SMALL_ENCODER_PARAMS = {"image_size": 32, "spatial_layers": 1}
SMALL_CROPS = {"frames": 4, "size": 32}


def tiny_features(features: dict, weights_dir: str | Path) -> dict:
    """Each configured backbone with its stage keys kept and its parameters replaced by the tiny
    model's (checkpoints written under ``weights_dir``)."""
    tiny = tiny_backbone_params(Path(weights_dir))
    out = {}
    for key, entry in features.items():
        name = entry.get("backbone", key)
        if name == "finetuned":  # a fine-tuning run's encoder: shrunk with the run
            out[key] = dict(entry)
            continue
        if name not in BACKBONES:
            raise KeyError(f"features.{key}: unknown backbone {name!r}")
        kept = {k: v for k, v in entry.items() if k in SIGNATURE_KEYS}
        out[key] = {**kept, **tiny[name]}
    return out


def _shrunk(params: dict, small: dict) -> dict:
    """``params`` with the keys of ``small`` it already has replaced."""
    return {**params, **{k: v for k, v in small.items() if k in params}}


def tiny_run(run: dict) -> dict:
    """A config run with the recipe's model shrunk and two epochs of training; a fine-tuning run's
    temporal model, encoder and crops shrunk too."""
    resolved = resolve_run(run)
    params = resolved.get("model_params", {})
    small = {k: v for k, v in SMALL_MODEL_PARAMS.items() if k in params}
    out = {**run, **SMALL_TRAINING, "model_params": {**run.get("model_params", {}), **small}}
    if resolved.get("finetune"):
        out["model_params"]["temporal_params"] = _shrunk(params.get("temporal_params", {}), SMALL_MODEL_PARAMS)
        out["model_params"]["encoder_params"] = _shrunk(params.get("encoder_params", {}), SMALL_ENCODER_PARAMS)
        out["finetune"] = _shrunk(resolved["finetune"], SMALL_CROPS if resolved["finetune"]["input"] == "crops" else {})
    return out


def tiny_recipe_config(recipe: dict, *, data_root: str | Path, weights_dir: str | Path, name: str | None = None,
                       dataset_options: dict | None = None, n_shards: int = 2) -> dict:
    """``recipe`` (a loaded recipe YAML) pointed at a tiny fixture under ``data_root``.

    ``dataset_options`` adds Aff-Wild2's ``test_list`` / ``sample_file``; ``name`` renames the
    results directory. The faces stage keeps its detector and policies but looks for faces of
    the fixture's size.
    """
    config = copy.deepcopy(recipe)
    dataset = config["dataset"]
    dataset.update(root=str(data_root), n_shards=n_shards, **(dataset_options or {}))
    for key in ("test_list", "sample_file"):
        if key not in (dataset_options or {}):
            dataset.pop(key, None)
    if name:
        dataset["name"] = name
        config["submission"] = f"results/{name}/submission.csv"
    config["features"] = tiny_features(config["features"], weights_dir)
    config["train"]["k_folds"] = 2
    config["train"]["runs"] = {key: tiny_run(run) for key, run in config["train"]["runs"].items()}
    faces = config["faces"]
    for params in (faces.get("params", {}), faces.get("fallback", {}).get("params", {})):
        if "min_face_size" in params:
            params["min_face_size"] = 20
    return config
