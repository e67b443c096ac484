"""Memory on a long clip: a 20-minute 720p talking head through the media and faces stages.

Renders the clip (the webcam inset of resources/demo/movie-hello.mp4, upscaled to 1280x720,
looped, with a tone as audio), then runs the media stage (probe + audio) and the faces stage
(streamed decode at 30 fps, MTCNN on frames downscaled to 240 px every 3rd frame, aligned
crops) on it in this process, and reports the peak resident memory. Target: under 2 GB.

    python bench/long_clip.py [--minutes 20]   # last line: JSON with minutes, frames, peak_rss_mb, ...
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectflow.faces import create_detector  # noqa: E402
from affectflow.faces.clip import process_clip  # noqa: E402
from affectflow.faces.options import FaceOptions  # noqa: E402
from affectflow.media import media_clip  # noqa: E402
from affectflow.runtime.ffmpeg import ffmpeg_exe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long_720p.mp4"
        started = time.perf_counter()
        subprocess.run(
            [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-stream_loop", "-1", "-i",
             str(REPO / "resources" / "demo" / "movie-hello.mp4"), "-f", "lavfi", "-i",
             f"sine=frequency=220:duration={seconds}", "-map", "0:v", "-map", "1:a", "-t", str(seconds),
             "-vf", "crop=248:186:116:85,scale=1280:720", "-c:v", "libx264", "-preset", "ultrafast",
             "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
            check=True, capture_output=True, timeout=3600,
        )
        render_s = time.perf_counter() - started
        started = time.perf_counter()
        facts, audio, status, reason, flags = media_clip(path, sample_rate=16000, peak_dbfs=-3.0)
        media_s = time.perf_counter() - started
        rss_after_media = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        media = {"media": str(path), "has_video": True, "width": facts.width, "height": facts.height,
                 "rotation": facts.rotation, "duration_s": facts.duration_s, "qc_status": status}
        detector = create_detector("mtcnn", min_face_size=60, thresholds=[0.8, 0.7, 0.7], device="auto")
        options = FaceOptions(fps=30, max_side=640, batch_size=32, crop_size=112, detect_side=240, detect_every=3)
        started = time.perf_counter()
        result = process_clip(media, detector, options)
        faces_s = time.perf_counter() - started
    crops_mb = sum(len(c) for c in result.arrays["crops"]) / 2**20
    print(json.dumps({
        "bench": "long_clip", "minutes": args.minutes, "frames": result.qc["frames"],
        "valid": int(result.arrays["valid"].sum()), "status": result.qc["status"],
        "decode_passes": result.qc["decode_passes"], "audio_s": round(len(audio) / 16000, 1),
        "render_s": round(render_s, 1), "media_s": round(media_s, 1), "faces_s": round(faces_s, 1),
        "faces_fps": round(result.qc["frames"] / faces_s, 1), "crops_mb": round(crops_mb, 1),
        "peak_rss_after_media_mb": round(rss_after_media, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
