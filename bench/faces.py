"""Faces stage throughput on a 720p talking-head clip, against decoding alone and naive MTCNN.

Renders a 10 s 1280x720 talking head (the webcam inset of resources/demo/movie-hello.mp4,
upscaled) and measures, in one process:

- ``decode_fps``: frames/s of decoding alone at the stage's rate and size (the limit);
- ``fps``: frames/s of the faces stage (decode, detect, track, align, JPEG) with the fast
  settings below: batched MTCNN on frames downscaled to ``DETECT_SIDE`` with a stricter first
  stage, detecting every ``DETECT_EVERY``-th frame and interpolating boxes in between;
- ``naive_fps``: MTCNN on every full-resolution frame, one frame at a time (what public
  challenge code does), on the first ``NAIVE_FRAMES`` frames;
- ``iou``: mean IoU of the fast settings' boxes with per-frame detection (same detector, same
  downscaled frames, every frame: what the every-k-th-frame shortcut must match; ``iou_min``:
  the worst frame, ``iou_tracked``: the interpolated frames only), and ``iou_vs_full_res``: the
  same against per-frame detection on the full decoded frames (640 px);
- ``peak_rss_mb``: peak resident memory of the process.

Target on 2 CPU cores: ``ratio_vs_decode >= 0.25`` with ``iou >= 0.9``.

    python bench/faces.py      # last line: JSON with fps, decode_fps, ratio_vs_decode, ratio_vs_naive, iou, peak_rss_mb
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectflow.faces import create_detector  # noqa: E402
from affectflow.faces.clip import process_clip  # noqa: E402
from affectflow.faces.options import FaceOptions  # noqa: E402
from affectflow.faces.tracks import box_iou  # noqa: E402
from affectflow.media import probe_media  # noqa: E402
from affectflow.runtime.ffmpeg import ffmpeg_exe  # noqa: E402
from affectflow.video import iter_frame_batches  # noqa: E402

SECONDS = 10
FPS = 30
MAX_SIDE = 640
DETECT_SIDE = 240
DETECT_EVERY = 3
MIN_FACE_SIZE = 60  # in pixels of the DETECT_SIDE frames: a talking head's face is far larger
PNET_THRESHOLD = 0.8  # facenet-pytorch's 0.6 passes many more candidates to the later stages
BATCH = 32
NAIVE_FRAMES = 10
MTCNN = {"min_face_size": 40, "device": "auto"}  # per-frame detection on the full decoded frames
NAIVE_MTCNN = {"min_face_size": 20, "device": "auto"}  # facenet-pytorch's defaults, as public code uses them


def render_clip(path: Path, *, seconds: float) -> Path:
    """A 1280x720 talking head: the webcam inset of the demo movie, upscaled, looped to SECONDS."""
    source = REPO / "resources" / "demo" / "movie-hello.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-stream_loop", "1", "-i", str(source),
         "-t", str(seconds), "-vf", "crop=248:186:116:85,scale=1280:720", "-an", "-c:v", "libx264",
         "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", str(path)],
        check=True, capture_output=True, timeout=600,
    )
    return path


def media_attrs(path: Path) -> dict:
    facts = probe_media(path)
    return {"media": str(path), "has_video": True, "width": facts.width, "height": facts.height,
            "rotation": facts.rotation, "duration_s": facts.duration_s, "qc_status": "ok"}


def decode_only(media: dict) -> tuple[int, float]:
    started = time.perf_counter()
    n = sum(len(b) for b in iter_frame_batches(media["media"], width=media["width"], height=media["height"],
                                               fps=FPS, max_side=MAX_SIDE, batch_size=BATCH))
    return n, time.perf_counter() - started


def naive(media: dict) -> float:
    """MTCNN on full-resolution frames one at a time; frames/s over the first NAIVE_FRAMES frames."""
    detector = create_detector("mtcnn", **NAIVE_MTCNN)
    frames = []
    for batch in iter_frame_batches(media["media"], width=media["width"], height=media["height"], fps=FPS,
                                    max_side=10_000, batch_size=1):
        frames.append(batch)
        if len(frames) == NAIVE_FRAMES:
            break
    detector.detect(frames[0])  # warm-up
    started = time.perf_counter()
    for frame in frames:
        detector.detect(frame)
    return len(frames) / (time.perf_counter() - started)


def box_ious(fast, reference) -> tuple[np.ndarray, np.ndarray]:
    """IoU per frame valid in both, and which of those frames were detection keyframes."""
    both = fast.arrays["valid"] & reference.arrays["valid"]
    ious = np.array([box_iou(a, b) for a, b in zip(fast.arrays["boxes"][both], reference.arrays["boxes"][both])])
    return ious, fast.arrays["fill"][both] == b"none"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detect-side", type=int, default=DETECT_SIDE)
    parser.add_argument("--detect-every", type=int, default=DETECT_EVERY)
    parser.add_argument("--min-face-size", type=int, default=MIN_FACE_SIZE,
                        help="MTCNN's smallest face, in pixels of the detection frames")
    parser.add_argument("--pnet-threshold", type=float, default=PNET_THRESHOLD, help="MTCNN's first-stage cut-off")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    fast_mtcnn = {**MTCNN, "min_face_size": args.min_face_size, "thresholds": [args.pnet_threshold, 0.7, 0.7]}
    with tempfile.TemporaryDirectory() as tmp:
        media = media_attrs(render_clip(Path(tmp) / "talking_head_720p.mp4", seconds=args.seconds))
        detector = create_detector("mtcnn", **MTCNN)
        fast_detector = create_detector("mtcnn", **fast_mtcnn)
        base = {"fps": FPS, "max_side": MAX_SIDE, "batch_size": BATCH, "crop_size": 112}
        for warm in (detector, fast_detector):  # first-call costs out of the timings
            process_clip(media, warm, FaceOptions(**base, max_seconds=0.5))

        n_decode, decode_s = decode_only(media)
        started = time.perf_counter()
        fast = process_clip(media, fast_detector,
                            FaceOptions(**base, detect_side=args.detect_side, detect_every=args.detect_every))
        fast_s = time.perf_counter() - started
        # per-frame detection with the same detector on the same downscaled frames: what the
        # every-k-th-frame shortcut must match
        per_frame = process_clip(media, fast_detector, FaceOptions(**base, detect_side=args.detect_side))
        started = time.perf_counter()
        full_res = process_clip(media, detector, FaceOptions(**base))  # every frame, as decoded (640)
        full_res_s = time.perf_counter() - started
        naive_fps = naive(media)

    ious, keyframe = box_ious(fast, per_frame)
    ious_full, _ = box_ious(fast, full_res)
    fps = fast.qc["frames"] / fast_s
    decode_fps = n_decode / decode_s
    result = {
        "bench": "faces",
        "fps": round(fps, 1),
        "decode_fps": round(decode_fps, 1),
        "ratio_vs_decode": round(fps / decode_fps, 3),
        "ratio_vs_naive": round(fps / naive_fps, 2),
        "iou": round(float(np.mean(ious)), 4) if len(ious) else 0.0,
        "iou_min": round(float(np.min(ious)), 4) if len(ious) else 0.0,
        "iou_tracked": round(float(ious[~keyframe].mean()), 4) if (~keyframe).any() else 0.0,
        "iou_vs_full_res": round(float(ious_full.mean()), 4) if len(ious_full) else 0.0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "naive_fps": round(naive_fps, 2),
        "full_res_per_frame_fps": round(full_res.qc["frames"] / full_res_s, 1),
        "frames": fast.qc["frames"],
        "faces_found": int(fast.arrays["valid"].sum()),
        "settings": {"fps": FPS, "max_side": MAX_SIDE, "detect_side": args.detect_side,
                     "detect_every": args.detect_every, "batch_size": BATCH, "mtcnn": fast_mtcnn,
                     "full_res_mtcnn": MTCNN},
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
