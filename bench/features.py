"""Feature extraction throughput: the ResNet18 backbone over a shard of demo face crops.

Builds a faces shard of real crops (the talker of resources/demo/movie-hello.mp4, boxes jittered
so that no two crops are alike) and a randomly initialised torchvision ResNet18 checkpoint (the
AffectNet weights are user-supplied; a random one costs the same to run). It then measures, in
one process:

- ``fps``: frames per second of the features stage end to end (``build_feature_shard``: reading
  the shard, decoding JPEG crops in DataLoader workers, batched forward, writing the HDF5 shard);
- ``forward_fps``: frames per second of the model forward alone, on the same batches already
  decoded in memory: the limit the stage can reach;
- ``ratio`` = fps / forward_fps. Target: >= 0.85 (loading and writing are not the bottleneck).

On a GPU the same code runs the forward under autocast (bf16/fp16) in channels_last.

    python bench/features.py [--frames 1536] [--batch-size 64] [--workers N] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectflow.faces.crop import decode_jpeg, encode_jpeg, square_crop  # noqa: E402
from affectflow.features import create_backbone  # noqa: E402
from affectflow.features.stage import build_feature_shard, default_workers  # noqa: E402
from affectflow.features.testing import resnet18_checkpoint  # noqa: E402
from affectflow.h5store import ShardWriter  # noqa: E402
from affectflow.runtime.device import pick_device  # noqa: E402
from affectflow.runtime.ffmpeg import ffmpeg_exe  # noqa: E402

TARGET = 0.85
# The talker's face in movie-hello.mp4 (1280 x 720), picked by looking at a frame.
TALKER_FACE = np.array([116 + 66, 85 + 38, 116 + 138, 85 + 125])
FRAMES_PER_CLIP = 128


def demo_frames() -> np.ndarray:
    """Every frame of the demo video at 30 fps, RGB (n, 720, 1280, 3)."""
    out = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(REPO / "resources" / "demo" / "movie-hello.mp4"),
         "-r", "30", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        check=True, capture_output=True, timeout=300,
    ).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, 720, 1280, 3)


def make_faces_shard(path: Path, n_frames: int, seed: int = 0) -> None:
    """A faces shard of ``n_frames`` 112 x 112 JPEG crops in clips of 128 frames, all valid."""
    rng = np.random.default_rng(seed)
    frames = demo_frames()
    crops = []
    for i in range(n_frames):
        jitter = rng.integers(-8, 9, 2)
        box = TALKER_FACE + np.array([jitter[0], jitter[1], jitter[0], jitter[1]])
        crops.append(encode_jpeg(square_crop(frames[i % len(frames)], box, size=112)))
    with ShardWriter(path, file_attrs={"stage": "faces", "fps": 30, "crop_size": 112}) as writer:
        for c, start in enumerate(range(0, n_frames, FRAMES_PER_CLIP)):
            blobs = crops[start : start + FRAMES_PER_CLIP]
            writer.add_clip(c, {"crops": blobs, "valid": np.ones(len(blobs), bool),
                                "timestamps": np.arange(len(blobs)) / 30.0}, {"qc_status": "ok"})
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1536)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="crop-decoding workers (default: the stage's)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each measurement; the best counts")
    args = parser.parse_args()
    workers = default_workers() if args.workers is None else args.workers
    device = pick_device("auto")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crops = make_faces_shard(tmp / "faces.h5", args.frames)
        params = {"weights": str(resnet18_checkpoint(tmp / "resnet18.pt"))}
        kwargs = dict(batch_size=args.batch_size, num_workers=workers, device=device)

        # warm-up: one small pass (allocator, cuDNN autotuning, first-call costs)
        make_faces_shard(tmp / "warm.h5", args.batch_size * 2)
        build_feature_shard("resnet18_pool512", params, tmp / "warm.h5", tmp / "warm_out.h5", **kwargs)

        # the same batches, decoded beforehand: the model forward alone
        backbone = create_backbone("resnet18_pool512", **params)
        backbone.device = device
        images = np.stack([decode_jpeg(blob) for blob in crops])
        batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]
        backbone.embed(batches[0])  # build and warm the model

        def forward_pass() -> float:
            started = time.perf_counter()
            for batch in batches:
                backbone.embed(batch)
            if device.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            return time.perf_counter() - started

        # Interleaved, best of each: a busy machine slows both measurements alike.
        stage_s, forward_s = [], []
        for r in range(args.repeats):
            started = time.perf_counter()
            build_feature_shard("resnet18_pool512", params, tmp / "faces.h5", tmp / f"out{r}.h5", **kwargs)
            stage_s.append(time.perf_counter() - started)
            forward_s.append(forward_pass())

    fps = args.frames / min(stage_s)
    forward_fps = args.frames / min(forward_s)
    result = {
        "bench": "features",
        "backbone": "resnet18_pool512",
        "device": device,
        "frames": args.frames,
        "batch_size": args.batch_size,
        "workers": workers,
        "cpus": os.cpu_count(),
        "fps": round(fps, 1),
        "forward_fps": round(forward_fps, 1),
        "ratio": round(fps / forward_fps, 3),
        "target_ratio": TARGET,
    }
    print(f"stage {min(stage_s):.2f} s, forward only {min(forward_s):.2f} s for {args.frames} frames", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
