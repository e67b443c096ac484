"""Train bench: epoch time with per-batch collation and host->device copies against the same epoch
with every batch already collated on the device (the limit), and the padding of the batches.

Reads the cached demo features (results/demo/features/<backbone>, built by `make demo`) for one
fold; without them it generates features with Hume-Vidmimic2-like clip lengths. Targets:
ratio = preloaded_epoch_s / epoch_s >= 0.9 and padding_fraction <= 0.05. Each mode runs
``--epochs`` times, interleaved; the fastest epoch of each is reported.

    python bench/train.py [--backbone mfcc128] [--epochs 15]   # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectflow.runtime.device import pick_device  # noqa: E402
from affectflow.tasks import EMI_TARGETS  # noqa: E402
from affectflow.training.batching import padding_fraction, random_batches, subsample  # noqa: E402
from affectflow.training.loop import Trainer, collate  # noqa: E402
from affectflow.training.sequences import Example, load_features  # noqa: E402
from affectflow.training.settings import TrainSettings  # noqa: E402


def demo_examples(backbone: str, fold: int, max_steps: int):
    """Training examples of one fold from the demo's cached features, or None if not built."""
    import pandas as pd

    root = REPO / "results" / "demo"
    shards = sorted((root / "features" / backbone).glob("shard-*.h5"))
    if not shards or not (root / "manifest.tsv").exists():
        return None
    manifest = pd.read_csv(root / "manifest.tsv", sep="\t")
    sequences = load_features(shards)
    labelled = manifest[(manifest["fold"] >= 0) & (manifest["fold"] != fold)]
    ids = [i for i in labelled["id"] if len(sequences.get(int(i), [])) > 0]
    frames = np.concatenate([sequences[int(i)] for i in ids])
    mean, std = frames.mean(0), frames.std(0) + 1e-6
    y = labelled.set_index("id").loc[ids, list(EMI_TARGETS)].to_numpy(np.float32)
    return [Example.make(subsample((sequences[int(i)] - mean) / std, max_steps), y[n]) for n, i in enumerate(ids)]


def synthetic_examples(n: int, dim: int, max_steps: int, seed: int = 0):
    """Clips with log-normal lengths (mean ~7 s at 10 Hz features, long tail), capped at max_steps."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(50), 0.8, n), 2, 20000).astype(int)
    return [Example.make(subsample(rng.normal(size=(t, dim)).astype(np.float32), max_steps),
                         rng.uniform(size=len(EMI_TARGETS))) for t in lengths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mfcc128")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40, help="timed epochs per mode (fastest reported)")
    parser.add_argument("--max-steps", type=int, default=128)
    parser.add_argument("--synthetic", type=int, default=0, help="use N generated clips instead of the demo")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a shared 2-core box, 2 spinning OpenMP threads "
                             "measure the neighbours more than the loop)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    examples = None if args.synthetic else demo_examples(args.backbone, args.fold, args.max_steps)
    source = f"demo:{args.backbone}"
    if examples is None:
        examples = synthetic_examples(args.synthetic or 2000, 128, args.max_steps)
        source = f"synthetic:{len(examples)}"
    device = pick_device("auto")
    settings = TrainSettings(model="gru", model_params={"hidden": 64, "dropout": 0.1}, batch_size=16,
                             max_steps=args.max_steps, epochs=args.epochs, seed=0)
    trainer = Trainer(settings, input_dim=examples[0].x.shape[1], output_dim=len(EMI_TARGETS), device=device)
    lengths = [len(e.x) for e in examples]

    def epoch_streamed() -> float:
        # what fit() does: new length-bucketed batches, collated and copied batch by batch
        start = time.perf_counter()
        for batch in trainer.batches(examples):
            trainer.train_batch([examples[i] for i in batch], "bench")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    preloaded = [collate([examples[i] for i in b], device, False) for b in trainer.batches(examples)]

    def epoch_preloaded() -> float:
        start = time.perf_counter()
        for x, mask, y, valid in preloaded:
            pred, _ = trainer._forward(x, mask)
            trainer._step(trainer.loss_fn(pred.float(), y, valid), "bench")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    epoch_streamed(), epoch_preloaded()  # warm-up
    streamed, pre = [], []
    for _ in range(args.epochs):  # interleaved, so load changes hit both modes alike
        streamed.append(epoch_streamed())
        pre.append(epoch_preloaded())
    # The fastest epoch of each mode: on a shared machine the slow ones measure the neighbours.
    epoch_s, preloaded_s = min(streamed), min(pre)
    g = torch.Generator().manual_seed(1)
    bucketed = statistics.mean(padding_fraction(trainer.batches(examples), lengths) for _ in range(20))
    naive = statistics.mean(padding_fraction(random_batches(len(lengths), 16, generator=g), lengths)
                            for _ in range(20))
    print(f"{source}: {len(examples)} clips, lengths {min(lengths)}-{max(lengths)}, device {device}", file=sys.stderr)
    print(json.dumps({
        "bench": "train", "source": source, "device": device, "threads": args.threads, "clips": len(examples),
        "batch_size": 16,
        "epoch_s": round(epoch_s, 4), "preloaded_epoch_s": round(preloaded_s, 4),
        "ratio": round(preloaded_s / epoch_s, 3), "padding_fraction": round(bucketed, 4),
        "padding_fraction_random_batches": round(naive, 4), "ratio_target": 0.9, "padding_target": 0.05,
    }))


if __name__ == "__main__":
    main()
