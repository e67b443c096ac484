"""Train one temporal model on one fold of cached features; write OOF and test predictions."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectflow.atomic import atomic_path, write_text_atomic
from affectflow.h5store import iter_clips
from affectflow.metrics import pearson_per_target
from affectflow.models import create_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one run (one model on one feature set)."""

    model: str
    model_params: dict
    epochs: int
    lr: float
    batch_size: int
    max_steps: int
    seed: int


def load_features(shard_paths: list[str | os.PathLike]) -> dict[int, np.ndarray]:
    """Every clip's (T, D) feature array, by integer clip id, from a backbone's shard files."""
    sequences = {}
    for path in shard_paths:
        for clip_id, arrays, _ in iter_clips(path):
            sequences[int(clip_id)] = arrays["features"].astype(np.float32)
    return sequences


def _fixed_length(seq: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``steps`` rows uniformly over the clip (or pad a shorter one), with a mask."""
    out = np.zeros((steps, seq.shape[1]), np.float32)
    mask = np.zeros(steps, bool)
    if len(seq) > steps:
        seq = seq[np.linspace(0, len(seq) - 1, steps).round().astype(int)]
    out[: len(seq)] = seq
    mask[: len(seq)] = True
    return out, mask


def _tensors(ids, sequences, steps, mean, std):
    xs, masks = zip(*(_fixed_length((sequences[i] - mean) / std, steps) for i in ids))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(masks))


def train_fold(
    manifest: pd.DataFrame,
    shard_paths: list[str | os.PathLike],
    fold: int,
    out_dir: str | os.PathLike,
    *,
    targets: list[str],
    settings: TrainSettings,
) -> dict:
    """Train on folds != ``fold``; predict fold ``fold`` (out-of-fold) and the test clips.

    Clips whose feature array is empty (no face, no audio) get no prediction (NaN) from this
    run; fusion and the submission writer decide what they get. Returns the metrics dict.
    """
    out_dir = Path(out_dir)
    sequences = load_features(shard_paths)
    usable = {i for i, s in sequences.items() if len(s) > 0}
    labelled = manifest[manifest["fold"] >= 0]
    train_ids = [i for i in labelled.loc[labelled["fold"] != fold, "id"] if i in usable]
    if len(train_ids) < 2:
        raise ValueError(f"fold {fold}: only {len(train_ids)} training clips have features")
    seed = settings.seed + fold
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    frames = np.concatenate([sequences[i] for i in train_ids])
    mean, std = frames.mean(0), frames.std(0) + 1e-6
    x, mask = _tensors(train_ids, sequences, settings.max_steps, mean, std)
    y = torch.tensor(manifest.set_index("id").loc[train_ids, targets].to_numpy(np.float32))

    model = create_model(settings.model, input_dim=x.shape[-1], output_dim=len(targets), **settings.model_params)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    losses = []
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(train_ids), generator=generator)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = torch.nn.functional.mse_loss(model(x[batch], mask[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(train_ids))
    log.info("fold %d: %d clips, final train MSE %.4f", fold, len(train_ids), losses[-1])

    def predict(ids: list[int]) -> pd.DataFrame:
        frame = pd.DataFrame({"id": ids})
        have = [i for i in ids if i in usable]
        values = np.full((len(ids), len(targets)), np.nan, np.float32)
        if have:
            model.eval()
            with torch.no_grad():
                xs, ms = _tensors(have, sequences, settings.max_steps, mean, std)
                values[[ids.index(i) for i in have]] = model(xs, ms).numpy()
        frame[targets] = values
        return frame

    oof_ids = labelled.loc[labelled["fold"] == fold, "id"].tolist()
    test_ids = manifest.loc[manifest["split"] == "test", "id"].tolist()
    oof, test = predict(oof_ids), predict(test_ids)

    scored = oof.dropna()
    truth = manifest.set_index("id").loc[scored["id"], targets].to_numpy()
    per_target = pearson_per_target(truth, scored[targets].to_numpy(), targets) if len(scored) > 2 else {}
    metrics = {
        "fold": fold,
        "train_clips": len(train_ids),
        "oof_clips": len(oof_ids),
        "oof_clips_predicted": len(scored),
        "oof_pearson": per_target,
        "oof_mean_pearson": float(np.mean(list(per_target.values()))) if per_target else float("nan"),
        "train_loss": losses,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("oof.csv", oof), ("test.csv", test)):
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "mean": torch.from_numpy(mean), "std": torch.from_numpy(std)}, tmp)
    write_text_atomic(out_dir / "config.json", json.dumps({**asdict(settings), "targets": targets,
                                                           "input_dim": int(x.shape[-1])}, indent=2))
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
