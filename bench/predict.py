"""Prediction on any videos, end to end: `affectflow predict` with the demo ensemble against ffmpeg decoding.

Setup (not timed): trains the demo ensemble (config/config.yaml: dlib_face128 visual GRU + mfcc128
audio GRU, late mean; shrunk for time to 10 training clips, 2 shards, 5 epochs, the feature and
faces settings left as the demo's, so the prediction path is the demo's) with the workflow's
``bundle`` target, and renders ``--videos`` ordinary videos of ``--seconds`` each (the demo's
rendered clips with audio and a face, one per video, looped, letterboxed to ``--size`` at 30 fps;
H.264 yuv420p + AAC).

Measured in the same run:

- the limit: ``ffmpeg -threads <cores> -i v -map 0:v -map 0:a -f null -`` over the same videos
  (video and audio decoded, one ffmpeg per video, its start included), two passes before the real
  path and one after, the fastest reported: ``decode_only_fps``, ``decode_only_videos_per_hour``;
- the real path: ``affectflow predict <folder> --bundle B --out <fresh> --cores N --shards N`` in a
  subprocess, wall time including Snakemake's start and DAG build: ``videos_per_hour``,
  ``frames_per_s`` (video frames of the set / wall s) and ``ratio`` = frames_per_s / decode_only_fps;
- the share of each stage: the ``s`` column of every benchmark TSV under ``<out>/benchmarks/``
  summed per stage (jobs overlap on N cores, so ``jobs_s`` may exceed ``wall_s``), and ``chain_s``: the
  longest job of each stage summed (about the critical path; ``wall_s - chain_s`` is roughly Snakemake);
- ``dry_run_s``: the same command with ``--dry-run`` (Snakemake's start, the listing of the videos and
  the DAG build), and ``peak_rss_mb``: the largest summed RSS of the command's process tree (psutil).

    python bench/predict.py [--videos 6] [--seconds 20] [--size 640x480] [--workdir DIR] [--setup-only]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectflow.media import probe_media  # noqa: E402
from affectflow.runtime.ffmpeg import ffmpeg_exe  # noqa: E402

FPS = 30
STAGES = ("media", "faces", "features", "manifest", "fold", "ensemble", "outputs")
BUNDLE = Path("results") / "demo" / "bundle" / "late_mean"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench/predict] {message}", file=sys.stderr, flush=True)


def demo_config() -> dict:
    """The default demo config, its training shrunk to seconds (as tests/conftest.py's tiny_config,
    but with the demo's feature settings, which the prediction path runs with)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["dataset"]["n_shards"] = 2
    config["dataset"]["demo"].update(resources=str(REPO / "resources" / "demo"), n_clips=10, max_duration_s=3)
    for run in config["train"]["runs"].values():
        run["epochs"] = 5
    return config


def train_bundle(workdir: Path, cores: int) -> Path:
    """The demo ensemble's bundle in ``workdir`` (trained by the workflow's ``bundle`` target unless there)."""
    bundle = workdir / BUNDLE
    if (bundle / "bundle.json").exists():
        log(f"reusing the bundle {bundle}")
        return bundle
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(demo_config(), sort_keys=False))
    log(f"training the demo ensemble in {workdir} (snakemake bundle) ...")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "bundle", "-s", str(REPO / "Snakefile"), "-d",
                           str(workdir), "--cores", str(cores), "--configfile", str(configfile)],
                          capture_output=True, text=True, env=ENV, timeout=3600)
    if proc.returncode:
        raise SystemExit(f"snakemake bundle failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    log(f"trained in {time.perf_counter() - started:.0f} s")
    return bundle


def ffmpeg(*args: str) -> None:
    """Run the package's ffmpeg quietly; raise on failure."""
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-v", "error", *args], check=True, capture_output=True,
                   timeout=1800)


def face_clips(workdir: Path) -> list[Path]:
    """The demo's rendered clips with audio and a face in at least 90% of their frames (training's faces QC)."""
    good = set()
    for qc in (workdir / "results" / "demo" / "faces" / "mtcnn").glob("shard-*.qc.tsv"):
        with open(qc) as f:
            good |= {int(row["id"]) for row in csv.DictReader(f, delimiter="\t") if float(row["face_rate"]) >= 0.9}
    raw = workdir / "results" / "demo" / "source" / "raw"
    return [path for i in sorted(good) if (path := raw / f"{i:05d}.mp4").exists() and probe_media(path).has_audio]


def make_videos(workdir: Path, n: int, seconds: float, size: str) -> Path:
    """``n`` videos of ``seconds`` each in ``workdir/videos_<n>x<seconds>s_<size>`` (made once): video i is
    the i-th demo clip with a face, looped, at ``size`` (letterboxed) and 30 fps; one person per video."""
    folder = workdir / f"videos_{n}x{seconds:g}s_{size}"
    if folder.is_dir() and len(list(folder.glob("*.mp4"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size.split("x")
    clips = face_clips(workdir)
    log(f"rendering {n} videos of {seconds:g} s from {len(clips)} demo clips with a face ...")
    scale = (f"scale={width}:{height}:force_original_aspect_ratio=decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,"
             f"setsar=1,fps={FPS}")
    for i in range(n):
        ffmpeg("-stream_loop", "-1", "-i", str(clips[i % len(clips)]), "-t", f"{seconds:g}", "-vf", scale,
               "-af", "aresample=48000", "-ac", "1", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(folder / f"video{i:02d}.mp4"))
    return folder


def decode_only(videos: list[Path], cores: int) -> float:
    """Wall seconds of ffmpeg decoding every video (video and audio), one process per video."""
    started = time.perf_counter()
    for video in videos:
        subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-threads", str(cores), "-i", str(video), "-map",
                        "0:v", "-map", "0:a?", "-f", "null", "-"], check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - started


def tree_rss(proc: psutil.Process) -> int:
    """Summed RSS of a process and its descendants (bytes)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _collect(stream, lines: list[str], echo: bool) -> None:
    for line in stream:
        lines.append(line)
        if echo:
            log(line.strip())


def run_predict(folder: Path, bundle: Path, out: Path, cores: int, shards: int, *dry: str) -> tuple[float, int]:
    """Run ``affectflow predict`` (in ``out``'s parent, where Snakemake keeps its records); wall s, peak RSS."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "affectflow.predict.cli", "predict", str(folder), "--bundle", str(bundle),
           "--out", str(out), "--cores", str(cores), "--shards", str(shards), *dry]
    peak = 0
    lines: list[str] = []
    started = time.perf_counter()
    with subprocess.Popen(cmd, cwd=out.parent, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        reader = threading.Thread(target=_collect, args=(proc.stdout, lines, not dry), daemon=True)
        reader.start()
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            peak = max(peak, tree_rss(watched))
            time.sleep(0.25)
        reader.join()
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"affectflow predict failed (exit {proc.returncode}):\n{''.join(lines)[-3000:]}")
    return wall, peak


def stage_seconds(out: Path) -> tuple[dict[str, float], dict[str, int], dict[str, float], dict[str, float]]:
    """Per stage: the summed ``s`` of its benchmark TSVs, its job count, its largest ``max_rss`` (MB) and
    its longest job (s)."""
    seconds: dict[str, float] = defaultdict(float)
    longest: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    rss: dict[str, float] = defaultdict(float)
    for path in sorted((out / "benchmarks").rglob("*.tsv")):
        stage = path.relative_to(out / "benchmarks").parts[0].removesuffix(".tsv")
        with open(path) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                seconds[stage] += float(row["s"])
                longest[stage] = max(longest[stage], float(row["s"]))
                jobs[stage] += 1
                if row.get("max_rss", "-") not in ("-", "NA", ""):
                    rss[stage] = max(rss[stage], float(row["max_rss"]))
    order = [s for s in STAGES if s in seconds] + sorted(set(seconds) - set(STAGES))
    return ({s: seconds[s] for s in order}, {s: jobs[s] for s in order}, {s: rss[s] for s in order},
            {s: longest[s] for s in order})


def parse_args() -> argparse.Namespace:
    """The bench's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6, help="videos in the set (default 6)")
    parser.add_argument("--seconds", type=float, default=20, help="length of each video (default 20 s)")
    parser.add_argument("--size", default="640x480", help="frame size of the videos (default 640x480)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="--cores of affectflow predict")
    parser.add_argument("--shards", type=int, help="--shards of affectflow predict (default: --cores)")
    parser.add_argument("--workdir", help="keep the trained demo and the videos here (reused when present)")
    parser.add_argument("--setup-only", action="store_true", help="train and render, measure nothing")
    return parser.parse_args()


def main() -> None:
    """Set up, measure, print the JSON line."""
    args = parse_args()
    shards = args.shards or args.cores
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        workdir = Path(args.workdir or tmp).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        bundle = train_bundle(workdir, args.cores)
        folder = make_videos(workdir, args.videos, args.seconds, args.size)
        videos = sorted(folder.glob("*.mp4"))
        facts = [probe_media(v) for v in videos]
        frames = sum(f.n_frames for f in facts)
        duration = sum(f.duration_s for f in facts)
        log(f"{len(videos)} videos, {duration:.1f} s, {frames} frames in {folder}")
        if args.setup_only:
            print(json.dumps({"bench": "predict", "setup_only": True, "workdir": str(workdir), "bundle": str(bundle),
                              "videos": len(videos), "frames": frames}))
            return
        runs = workdir / "runs" / time.strftime("%Y%m%d-%H%M%S")
        decode = [decode_only(videos, args.cores), decode_only(videos, args.cores)]
        log(f"decode-only: {min(decode):.2f} s; dry run ...")
        dry_s, _ = run_predict(folder, bundle, runs / "dry" / "out", args.cores, shards, "--dry-run")
        log(f"dry run {dry_s:.1f} s; predicting ...")
        wall, peak = run_predict(folder, bundle, runs / "real" / "out", args.cores, shards)
        decode.append(decode_only(videos, args.cores))
        out = runs / "real" / "out"
        seconds, jobs, stage_rss, longest = stage_seconds(out)
        with open(out / "summary.csv") as f:
            summary = list(csv.DictReader(f))
        per_shard = {}
        for qc in sorted((out / "media").glob("shard-*.qc.tsv")):
            with open(qc) as f:
                per_shard[qc.name.split(".")[0]] = sum(1 for _ in csv.DictReader(f, delimiter="\t"))

    jobs_s = sum(seconds.values())
    best_decode = min(decode)
    result = {
        "bench": "predict",
        "videos": len(videos),
        "video_seconds": round(duration, 1),
        "frames": frames,
        "size": args.size,
        "wall_s": round(wall, 1),
        "videos_per_hour": round(len(videos) * 3600 / wall, 1),
        "frames_per_s": round(frames / wall, 2),
        "realtime_factor": round(duration / wall, 3),
        "decode_only_s": round(best_decode, 3),
        "decode_only_fps": round(frames / best_decode, 1),
        "decode_only_videos_per_hour": round(len(videos) * 3600 / best_decode),
        "decode_only_passes_s": [round(d, 3) for d in decode],
        "decode_only_streams": "video+audio",
        "ratio": round((frames / wall) / (frames / best_decode), 5),
        "dry_run_s": round(dry_s, 2),
        "jobs_s": round(jobs_s, 1),
        "stage_seconds": {s: round(v, 2) for s, v in seconds.items()},
        "stage_share": {s: round(v / jobs_s, 3) for s, v in seconds.items()},
        "stage_jobs": jobs,
        "stage_longest_job_s": {s: round(v, 2) for s, v in longest.items()},
        "chain_s": round(sum(longest.values()), 1),
        "stage_max_rss_mb": {s: round(v, 1) for s, v in stage_rss.items()},
        "peak_rss_mb": round(peak / 2**20, 1),
        "statuses": {s: [r["status"] for r in summary].count(s) for s in sorted({r["status"] for r in summary})},
        "face_rate": round(sum(int(r["face_frames"]) for r in summary) / sum(int(r["frames"]) for r in summary), 3),
        "videos_per_shard": per_shard,
        "cores": args.cores,
        "shards": shards,
        "torch_threads_per_job": "the job's threads (affectflow.runtime.job); MTCNN 1",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                   f"{round(psutil.virtual_memory().total / 2**30)} GiB",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
