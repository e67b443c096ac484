"""Training at Aff-Wild2 scale: peak private memory and epoch time of one per-frame fold against its frame count.

For each size, writes a synthetic VA data set through the project's writers (labelled manifest,
Aff-Wild2 annotation files and their frame label table, feature shards of a 1024-d "visual" and a
768-d "audio" key on the video frame timeline, tracks of 1k-6k frames at 30 fps), then trains
fold 0 of the ``liu2023_va_gru`` recipe (early fusion, 2 x 512 GRU carrying its state across
150-frame segments, batch 32) for one epoch through ``train_fold_job``, as the train rule does, in
a fresh process per size (peaks do not accumulate) with torch on ``--threads`` threads. That process
samples /proc/self/status every 20 ms: RssAnon (private memory: what the target is about), RssFile
(pages of mapped files: reclaimable page cache, reported apart) and VmRSS; also ru_maxrss.
epoch_s is the fit's training epoch (``affectflow.training.loop._train_epoch``, timed from outside;
``epoch_timer`` says when only ``fit`` or the whole job could be timed); the fit's validation, the
OOF prediction and the data loading are reported apart. One ``--dims`` entry trains the recipe's
GRU without the fusion layer (a fusion model needs two modalities).

Every size trains the same batch (``--batch-size``, default 4, which the smallest size fills; see
:data:`BATCH_SIZE`): a job's memory is its model's and one batch's, so only then does the peak
show how memory grows with the data. ``--legacy-src`` also trains each size with another
checkout's affectflow (the in-memory loader from before issue 14) in the same run.

Targets (issue 14): peak_rss_ratio (largest peak RssAnon over the smallest) < 1.2 over 10x the
frames, and an epoch time per frame no worse than the in-memory loader's: ``time_per_frame_vs_loader``
gives each row's epoch time over the last loader's (``legacy`` with ``--legacy-src``) at the same
size; ``time_per_frame_vs_baseline`` compares with the issue's figures (batch 32: only with
``--batch-size 0``).
Time it on a quiet machine: with other jobs on the cores, 2 OpenMP threads spin and an epoch takes
many times longer (a 2-core box under a test run: 15x). The shards of 300k frames at 1024 + 768
dims take 2.2 GB of disk (temporary, one size at a time, or kept in ``--workdir`` and reused by a
later run with the same size, dims, seed and shards), and the memmap loader's store as much again
in $TMPDIR while a fold runs. RssFile includes the shared libraries (~0.4 GiB of torch and the
rest) as well as mapped shards and the store.

    python bench/train_scale.py [--sizes 30000,100000,300000] [--dims 1024,768] [--threads 2]
                                [--loader NAME[,NAME...]] [--legacy-src DIR] [--batch-size N]
                                [--workdir DIR] [--quick]   # last line: JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# --legacy-src: a fold process imports affectflow from another checkout (the loader before issue 14)
sys.path.insert(0, os.environ.get("TRAIN_SCALE_SRC") or str(REPO / "src"))

from affectflow.data import write_frame_labels, write_manifest  # noqa: E402
from affectflow.data.affwild2 import track_id  # noqa: E402
from affectflow.data.folds import assign_folds  # noqa: E402
from affectflow.data.listing import shard_column  # noqa: E402
from affectflow.h5store import ShardWriter  # noqa: E402
from affectflow.tasks import task_spec  # noqa: E402
from affectflow.testing.planted import FPS, INVALID_SHARE, smooth_latent, write_annotations  # noqa: E402
from affectflow.training.recipes import recipe  # noqa: E402

RECIPE = "liu2023_va_gru"
FOLD, K_FOLDS, SEED = 0, 6, 0
SIZES, QUICK_SIZES, DIMS = (30_000, 100_000, 300_000), (5_000, 15_000), (1024, 768)
KEYS = ("visual", "audio")  # the features keys of the first two --dims; more are audio2, audio3, ...
TRACK_FRAMES = (1_000, 6_000)  # Aff-Wild2-like track lengths (uniform), shrunk when a size is too small
MIN_TRACKS = 8  # fold scheme train5_val deals the train tracks into 5 folds: every size needs this many
VAL_SHARE = 0.18  # Aff-Wild2 VA: about 76 validation tracks of 432 labelled
N_SHARDS = 32  # config/recipes/va_liu2023.yaml
SAMPLE_S = 0.02
STATUS_FIELDS = ("RssAnon", "RssFile", "RssShmem", "VmRSS", "VmHWM")
TARGET_RATIO = 1.2
LEGACY = "legacy"  # the --legacy-src checkout's loader
# The batch size of the bench's run. The memory of a train job is the model's and one batch's: to
# measure how it grows with the data, every size must train the same batch. The smallest size
# (30k frames: 8 tracks, 6 of them trained on in fold 0) fills batches of 4; the recipe's 32 would
# fill only from ~45 tracks (~160k frames) on, so at the smaller sizes the batch itself would grow.
BATCH_SIZE = 4
GIB = 2**30
# Issue 14's figures for today's (in-memory) loader: liu2023_va_gru, fold 0 of 6, one epoch, 2 CPU
# threads; "peak" is the process's peak RSS (anonymous and file pages together).
BASELINE = {
    "source": "issue 14: in-memory loader, liu2023_va_gru fold 0 of 6, one epoch, 2 CPU threads",
    "rows": [
        {"frames": 30_000, "dims": [1024], "rss_after_loading_gib": 0.76, "peak_rss_gib": 1.19, "epoch_s": 11.5},
        {"frames": 100_000, "dims": [1024], "rss_after_loading_gib": 1.04, "peak_rss_gib": 2.00, "epoch_s": 28.1},
        {"frames": 300_000, "dims": [1024], "rss_after_loading_gib": 1.85, "peak_rss_gib": 3.17, "epoch_s": 64.0},
        {"frames": 300_000, "dims": [1024, 768], "rss_after_loading_gib": 3.23, "peak_rss_gib": 4.28,
         "epoch_s": 94.3},
    ],
}


# ---------------------------------------------------------------- data (parent process)

def track_lengths(rng: np.random.Generator, frames: int) -> list[int]:
    """Track lengths summing to ``frames``: uniform in :data:`TRACK_FRAMES`, scaled down when that
    would give fewer than :data:`MIN_TRACKS` tracks (the --quick sizes)."""
    lo, hi = TRACK_FRAMES
    scale = min(1.0, frames / (MIN_TRACKS * (lo + hi) / 2))
    lo, hi = max(2, int(lo * scale)), max(3, int(hi * scale))
    lengths: list[int] = []
    while sum(lengths) < frames:
        lengths.append(int(rng.integers(lo, hi + 1)))
    lengths[-1] -= sum(lengths) - frames
    if lengths[-1] < lo and len(lengths) > 1:  # a short remainder joins the track before it
        lengths[-2] += lengths.pop()
    return lengths


def write_dataset(root: Path, frames: int, dims: list[int], seed: int, n_shards: int) -> dict:
    """Write a labelled VA data set of ``frames`` frames under ``root`` as the workflow lays it out;
    return the paths and counts ``train_fold_job`` needs."""
    spec = task_spec("va")
    rng = np.random.default_rng(seed)
    lengths = track_lengths(rng, frames)
    n = len(lengths)
    names = [f"{k + 1}-30-1280x720" for k in range(n)]  # one track per video: every track its own group
    n_val = max(1, round(VAL_SHARE * n))
    rows = pd.DataFrame({
        "id": [track_id(name) for name in names], "split": rng.permutation(["val"] * n_val + ["train"] * (n - n_val)),
        "subject": names, "media": [str(root / "videos" / f"{name}.mp4") for name in names], "name": names,
        "labels": "", "fps": FPS, "frames": lengths, "crops": ""})
    labels = {}
    for i, length in zip(rows["id"], lengths, strict=True):  # smooth VA in (-1, 1) with an invalid block
        y = np.tanh(smooth_latent(rng.normal(0, 1, (length, len(spec.targets))))).astype(np.float32)
        invalid = int(INVALID_SHARE * length)
        start = int(rng.integers(0, length - invalid))
        y[start: start + invalid] = spec.invalid
        labels[int(i)] = y
    rows["labels"] = write_annotations(rows, labels, spec, root)
    rows["shard"] = shard_column(rows["id"], rows["split"], n_shards)
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_manifest(assign_folds(rows, K_FOLDS, seed=SEED), results / "manifest.tsv")
    write_frame_labels(results / "manifest.tsv", "va", results / "frame_labels.csv.gz")
    keys = feature_keys(dims)
    shards = []
    for key, dim in zip(keys, dims, strict=True):
        for label, part in rows.groupby("shard", sort=True):
            path = results / "features" / key / f"shard-{label}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            attrs = {"stage": "features", "backbone": key, "modality": "visual" if key == KEYS[0] else "audio",
                     "synthetic": True}
            with ShardWriter(path, file_attrs=attrs) as writer:
                for i, length in zip(part["id"], part["frames"], strict=True):  # one track in memory at a time
                    writer.add_clip(int(i), {"features": rng.standard_normal((int(length), dim), dtype=np.float32),
                                             "timestamps": np.arange(int(length)) / FPS})
            shards.append(str(path))
    return {"manifest": str(results / "manifest.tsv"), "frame_labels": str(results / "frame_labels.csv.gz"),
            "shards": shards, "tracks": n, "val_tracks": n_val, "frames": int(sum(lengths))}


def feature_keys(dims: list[int]) -> list[str]:
    """The features key of each --dims entry."""
    return [*KEYS, *(f"audio{n}" for n in range(2, len(dims)))][: len(dims)]


def bench_run(dims: list[int], loader: str | None, batch_size: int | None = None) -> dict:
    """The config run: the recipe for one epoch (with ``batch_size`` when given); one modality drops
    the fusion layer (see the docstring). ``loader`` None or :data:`LEGACY`: no ``loader`` key."""
    keys = feature_keys(dims)
    if len(dims) > 1:
        run = {"recipe": RECIPE, "backbone": keys[0], "fuse_with": keys[1:], "epochs": 1}
    else:
        run = recipe(RECIPE)
        run["model"] = run["model_params"].pop("encoder")
        for key in ("fusion", "fusion_dim"):
            run["model_params"].pop(key)
        run.update(backbone=keys[0], epochs=1)
    if loader not in (None, LEGACY):
        run["loader"] = loader
    if batch_size:
        run["batch_size"] = batch_size
    return run


def loader_choices(requested: str | None, legacy_src: Path | None) -> list[str | None]:
    """The --loader values to run (None: the run's default, no ``loader`` key), then :data:`LEGACY`
    with ``--legacy-src``."""
    from affectflow.training.settings import TrainSettings

    has_key = "loader" in {f.name for f in dataclasses.fields(TrainSettings)}
    if requested and not has_key:
        raise SystemExit("--loader: TrainSettings has no 'loader' field, so only the current (in-memory) loader "
                         "exists; run without --loader")
    names = [name.strip() for name in requested.split(",") if name.strip()] if requested else [None]
    if legacy_src is not None:
        if not (legacy_src / "affectflow" / "training" / "fold.py").exists():
            raise SystemExit(f"--legacy-src {legacy_src}: not the src/ folder of an affectflow checkout")
        names.append(LEGACY)
    return names


# ---------------------------------------------------------------- one fold (child process)

class StatusSampler(threading.Thread):
    """Peaks of :data:`STATUS_FIELDS` (bytes) in /proc/self/status, read every ``interval`` s."""

    def __init__(self, interval: float = SAMPLE_S) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.marks = interval, dict.fromkeys(STATUS_FIELDS, 0), {}
        self._stop_event = threading.Event()

    @staticmethod
    def read() -> dict[str, int]:
        out = {}
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in STATUS_FIELDS:
                    out[name] = int(value.split()[0]) * 1024  # kB
        return out

    def sample(self) -> dict[str, int]:
        now = self.read()
        for name, value in now.items():
            self.peak[name] = max(self.peak[name], value)
        return now

    def mark(self, name: str) -> None:
        """Record the current values as phase ``name`` (also a sample)."""
        self.marks[name] = self.sample()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def _timed(fn, seconds: list, before=None):
    """``fn`` that appends its wall time to ``seconds`` (and calls ``before(args)`` first)."""
    def wrapper(*args, **kwargs):
        if before is not None:
            before(args)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)
    return wrapper


def child(spec: dict) -> None:
    """Train one fold as the train rule does; print one JSON line of peaks and times."""
    sampler = StatusSampler()
    sampler.start()
    import torch

    import affectflow.training.fold as fold_module
    import affectflow.training.loop as loop_module

    torch.set_num_threads(spec["threads"])
    sampler.mark("start")
    epochs, fits, info = [], [], {}

    def at_fit(args) -> None:  # data loaded and examples built: the "RSS after loading"
        sampler.mark("fit_start")
        try:
            info["train_steps"] = int(sum(len(e.x) for e in args[1]))
        except (IndexError, TypeError, AttributeError):
            pass

    timer = "job"
    if callable(getattr(loop_module, "_train_epoch", None)):
        loop_module._train_epoch, timer = _timed(loop_module._train_epoch, epochs), "train_epoch"
    if callable(getattr(fold_module, "fit", None)):
        fold_module.fit = _timed(fold_module.fit, fits, before=at_fit)
        timer = timer if timer != "job" else "fit"
    start = time.perf_counter()
    fold_module.train_fold_job(spec["manifest"], spec["shards"], FOLD, spec["out_dir"], task="va", run=spec["run"],
                               seed=SEED, k_folds=K_FOLDS, frame_labels=spec["frame_labels"])
    job_s = time.perf_counter() - start
    sampler.stop()
    metrics = json.loads((Path(spec["out_dir"]) / "metrics.json").read_text())
    epoch_s = sum(epochs) if timer == "train_epoch" else fits[0] if timer == "fit" else job_s
    print(json.dumps({
        "peak": sampler.peak, "marks": sampler.marks, "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        * 1024, "epoch_s": epoch_s, "epoch_timer": timer, "fit_s": fits[0] if fits else None, "job_s": job_s,
        "torch_threads": torch.get_num_threads(), **info,
        "metrics": {k: metrics.get(k) for k in ("train_clips", "val_clips", "oof_rows", "epochs_run",
                                                 "padding_fraction", "device")},
    }))


# ---------------------------------------------------------------- parent

def run_size(frames: int, dims: list[int], loader: str | None, data: dict, root: Path, args) -> dict:
    """One fold in a fresh process; its figures in GiB and seconds."""
    threads = args.threads
    out_dir = root / f"fold-{loader or 'default'}"
    shutil.rmtree(out_dir, ignore_errors=True)  # no resumable checkpoint of an earlier run
    spec = {**data, "out_dir": str(out_dir), "run": bench_run(dims, loader, args.batch_size), "threads": threads}
    env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    env.pop("TRAIN_SCALE_SRC", None)
    if loader == LEGACY:
        env["TRAIN_SCALE_SRC"] = str(args.legacy_src.resolve())
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE, text=True,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(f"the fold process for {frames} frames failed (exit {proc.returncode}); see its stderr above")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    peak, at_fit = got["peak"], got["marks"].get("fit_start", {})
    return {
        "frames": data["frames"], "dims": dims, "loader": loader, "tracks": data["tracks"],
        "train_steps": got.get("train_steps"),
        "peak_rss_anon_gib": round(peak["RssAnon"] / GIB, 3), "peak_rss_file_gib": round(peak["RssFile"] / GIB, 3),
        "peak_vmrss_gib": round(peak["VmRSS"] / GIB, 3), "vmhwm_gib": round(peak["VmHWM"] / GIB, 3),
        "ru_maxrss_gib": round(got["ru_maxrss"] / GIB, 3),
        "rss_anon_at_start_gib": round(got["marks"]["start"]["RssAnon"] / GIB, 3),
        "rss_anon_after_loading_gib": round(at_fit["RssAnon"] / GIB, 3) if at_fit else None,
        "vmrss_after_loading_gib": round(at_fit["VmRSS"] / GIB, 3) if at_fit else None,
        "epoch_s": round(got["epoch_s"], 2), "epoch_timer": got["epoch_timer"],
        "s_per_mframe": round(got["epoch_s"] / data["frames"] * 1e6, 2),
        "fit_s": None if got["fit_s"] is None else round(got["fit_s"], 2), "job_s": round(got["job_s"], 2),
        "torch_threads": got["torch_threads"], "fold": got["metrics"],
    }


def against_baseline(row: dict) -> dict:
    """The row's epoch time per frame over the baseline's: the same size and dims, else the same dims' nearest size."""
    same = [b for b in BASELINE["rows"] if b["dims"] == row["dims"]]
    if not same:
        return {"frames": row["frames"], "loader": row["loader"], "ratio": None, "against": None}
    base = min(same, key=lambda b: (abs(np.log(b["frames"] / row["frames"])), -b["frames"]))
    ratio = row["epoch_s"] / row["frames"] / (base["epoch_s"] / base["frames"])
    return {"frames": row["frames"], "loader": row["loader"], "ratio": round(ratio, 3),
            "against": f"{base['frames']} frames {'+'.join(map(str, base['dims']))}-d, {base['epoch_s']} s"}


def summary(rows: list[dict]) -> dict:
    """peak_rss_ratio and the 3M-frame extrapolation (linear in frames) of one loader's rows."""
    peaks = [r["peak_rss_anon_gib"] for r in rows]
    out = {"peak_rss_ratio": round(max(peaks) / min(peaks), 3), "s_per_mframe": [r["s_per_mframe"] for r in rows]}
    if len(rows) > 1:
        frames = np.array([r["frames"] for r in rows], float)
        slope, intercept = np.polyfit(frames, peaks, 1)
        out["extrapolated_3m"] = {"peak_rss_anon_gib": round(float(slope * 3e6 + intercept), 2),
                                  "epoch_s": round(float(np.mean([r["s_per_mframe"] for r in rows]) * 3), 1),
                                  "peak_rss_anon_gib_per_mframe": round(float(slope * 1e6), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="frames per data set, comma-separated")
    parser.add_argument("--dims", default=",".join(map(str, DIMS)), help="feature widths, one features key each")
    parser.add_argument("--quick", action="store_true", help=f"sizes {','.join(map(str, QUICK_SIZES))} (smoke run)")
    parser.add_argument("--loader", default=None, help="run key 'loader' (comma-separated: each in turn), when "
                                                       "TrainSettings has that field")
    parser.add_argument("--legacy-src", type=Path, default=None,
                        help="also train each size with the affectflow of this src/ folder (a checkout from before "
                             "the bounded-memory loader, e.g. git worktree add /tmp/legacy 1974846): loader 'legacy'")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"the run's batch size (default {BATCH_SIZE}: every size fills its batches; 0: the "
                             "recipe's 32, which the smaller sizes cannot fill)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data here (default: a temporary dir)")
    parser.add_argument("--threads", type=int, default=2, help="torch (and BLAS/OpenMP) threads of the fold")
    parser.add_argument("--shards", type=int, default=N_SHARDS, help="labelled shards per features key")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(json.loads(args.child))
        return
    sizes = list(QUICK_SIZES) if args.quick else [int(s) for s in args.sizes.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    loaders = loader_choices(args.loader, args.legacy_src)
    temp = None if args.workdir else tempfile.TemporaryDirectory(prefix="train_scale-")
    base = args.workdir or Path(temp.name)
    rows = []
    try:
        for frames in sizes:
            root = base / f"{frames}f-{'+'.join(map(str, dims))}d-seed{args.seed}-{args.shards}shards"
            ready = root / "ready.json"
            if ready.exists():
                data = json.loads(ready.read_text())
                print(f"{frames} frames: reusing {root}", flush=True)
            else:
                shutil.rmtree(root, ignore_errors=True)
                start = time.perf_counter()
                data = write_dataset(root, frames, dims, args.seed, args.shards)
                ready.write_text(json.dumps(data))
                print(f"{frames} frames: wrote {data['tracks']} tracks ({data['val_tracks']} val), "
                      f"{len(data['shards'])} shards in {time.perf_counter() - start:.1f} s", flush=True)
            for loader in loaders:
                row = run_size(frames, dims, loader, data, root, args)
                rows.append(row)
                print(f"{frames} frames {'+'.join(map(str, dims))}-d loader {loader or 'current'}: "
                      f"peak RssAnon {row['peak_rss_anon_gib']:.2f} GiB, RssFile {row['peak_rss_file_gib']:.2f} GiB, "
                      f"VmRSS {row['peak_vmrss_gib']:.2f} GiB (after loading: RssAnon "
                      f"{row['rss_anon_after_loading_gib']} GiB); epoch {row['epoch_s']:.1f} s "
                      f"({row['s_per_mframe']:.1f} s per M frames; fit {row['fit_s']} s, job {row['job_s']} s)",
                      flush=True)
            if temp is not None:
                shutil.rmtree(root)  # disk for the next size
    finally:
        if temp is not None:
            temp.cleanup()
    names = [loader or "current" for loader in loaders]
    by_loader = {name: summary([r for r in rows if r["loader"] == loader]) for name, loader in zip(names, loaders)}
    first = by_loader[names[0]]
    result = {
        "bench": "train_scale", "recipe": RECIPE, "fold": FOLD, "threads": args.threads,
        "batch_size": args.batch_size or "recipe", "sizes": rows,
        "peak_rss_ratio": first["peak_rss_ratio"], "target_ratio": TARGET_RATIO,
        "loaders": names, "by_loader": by_loader, "baseline": BASELINE,
        "time_per_frame_vs_baseline": [against_baseline(r) for r in rows],
    }
    if len(loaders) > 1:  # each loader's epoch time per frame over the last one's, size by size
        ref = {r["frames"]: r for r in rows if r["loader"] == loaders[-1]}
        result["time_per_frame_vs_loader"] = {
            "against": names[-1],
            "ratios": [{"frames": r["frames"], "loader": r["loader"],
                        "ratio": round(r["epoch_s"] / ref[r["frames"]]["epoch_s"], 3)} for r in rows]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
