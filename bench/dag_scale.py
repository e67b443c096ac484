"""DAG scale: a dry run over a synthetic Hume-Vidmimic2-sized data set (17,246 clips).

Builds the organisers' layout (split csvs and empty raw/ files) in a temporary directory, runs
``snakemake --dry-run`` with a production-like config and reports its wall time and job count.
It repeats the dry run with 1,000 clips (the job count must not change: jobs are per shard)
and with twice the shards (the job count must grow). Target: dry run under 15 s on 2 cores.
It also times the data set's listing alone (``affectflow.data.listing.read_listing``: the split
files read, ``raw/`` listed, one ``stat`` per clip for its fingerprint), which every DAG build pays.

    python bench/dag_scale.py            # last line: JSON with clips, jobs, dry_run_s, ...
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectflow.data.listing import read_listing  # noqa: E402
from affectflow.tasks import EMI_HEADER, emi_media_name  # noqa: E402

TARGET_S = 15.0
FULL_SIZE = {"train": 8072, "val": 4588, "test": 4586}  # Hume-Vidmimic2, 17,246 clips


def make_dataset(root: Path, sizes: dict[str, int], seed: int = 0) -> int:
    """Write split csvs and empty raw/ files for a synthetic data set; return the clip count."""
    rng = np.random.default_rng(seed)
    total = sum(sizes.values())
    ids = rng.permutation(total)
    (root / "raw").mkdir(parents=True)
    start = 0
    for split, n in sizes.items():
        chosen = np.sort(ids[start : start + n])
        start += n
        for clip in chosen:
            (root / "raw" / emi_media_name(clip)).touch()
        if split == "test":
            continue
        name = "train_split.csv" if split == "train" else "valid_split.csv"
        labels = rng.uniform(0, 1, size=(n, len(EMI_HEADER) - 1))
        lines = [",".join(EMI_HEADER)] + [
            ",".join([str(c), *(f"{v:.4f}" for v in row)]) for c, row in zip(chosen, labels)
        ]
        (root / name).write_text("\n".join(lines) + "\n")
    return total


def dry_run(workdir: Path, root: Path, n_shards: int) -> tuple[float, int]:
    """Wall time and job count of a dry run of the full workflow."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["dataset"] = {"name": "vidmimic", "task": "emi", "root": str(root), "n_shards": n_shards}
    config["train"]["k_folds"] = 5
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / f"config-{n_shards}.yaml"
    configfile.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/submission.csv", "-s", str(REPO / "Snakefile"),
         "-d", str(workdir), "--dry-run", "--configfile", str(configfile)],
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"dry run failed:\n{proc.stdout}\n{proc.stderr}")
    match = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
    if not match:
        raise SystemExit(f"no job count in the dry-run output:\n{proc.stdout}")
    return elapsed, int(match.group(1))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = make_dataset(tmp / "full", FULL_SIZE)
        small = make_dataset(tmp / "small", {"train": 500, "val": 250, "test": 250})
        dry_run(tmp / "warm", tmp / "full", 64)  # warm the file cache and .pyc files
        seconds, jobs = dry_run(tmp / "w1", tmp / "full", 64)
        _, jobs_small = dry_run(tmp / "w2", tmp / "small", 64)
        _, jobs_double = dry_run(tmp / "w3", tmp / "full", 128)
        started = time.perf_counter()
        listed = len(read_listing("emi", tmp / "full", n_shards=64).clips)
        listing_s = time.perf_counter() - started
    print(f"listing of {listed} clips (split files, raw/, one stat each): {listing_s:.2f} s")
    print(f"{clips} clips, 64 shards: {jobs} jobs, dry run {seconds:.1f} s (target < {TARGET_S:.0f} s)")
    print(f"{small} clips, 64 shards: {jobs_small} jobs; {clips} clips, 128 shards: {jobs_double} jobs")
    result = {
        "bench": "dag_scale",
        "clips": clips,
        "shards": 64,
        "jobs": jobs,
        "dry_run_s": round(seconds, 2),
        "target_s": TARGET_S,
        "ratio_vs_target": round(seconds / TARGET_S, 3),
        "jobs_with_1000_clips": jobs_small,
        "jobs_with_128_shards": jobs_double,
        "listing_s": round(listing_s, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
