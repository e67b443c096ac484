"""Media stage: probe each clip and extract its audio as 16 kHz mono 16-bit, peak-normalised.

The video itself is decoded once, later, by the faces stage (at the configured frame rate);
this stage keeps the probe facts that the later stages and the QC table need.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import av
import ffmpeg
import numpy as np
import pandas as pd

from affectflow.ffmpeg_tools import ffmpeg_exe
from affectflow.h5store import ShardWriter

log = logging.getLogger(__name__)

INT16_FULL_SCALE = 32767


class MediaError(RuntimeError):
    """A media file that cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class ProbeFacts:
    """What the container says about a clip."""

    has_video: bool
    has_audio: bool
    fps: float
    duration_s: float
    width: int
    height: int
    rotation: int
    audio_sample_rate: int


def probe_media(path: str | os.PathLike) -> ProbeFacts:
    """Probe a media file with PyAV (no ffprobe binary needed)."""
    try:
        with av.open(str(path)) as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            duration_s = container.duration / av.time_base if container.duration else 0.0
            fps = float(video.average_rate or video.guessed_rate or 0) if video else 0.0
            if video is not None and video.duration and video.time_base:
                duration_s = max(duration_s, float(video.duration * video.time_base))
            rotation = 0
            if video is not None:
                rotation = int(video.metadata.get("rotate", 0) or 0)
            return ProbeFacts(
                has_video=video is not None,
                has_audio=audio is not None,
                fps=fps,
                duration_s=float(duration_s),
                width=int(video.codec_context.width) if video else 0,
                height=int(video.codec_context.height) if video else 0,
                rotation=rotation,
                audio_sample_rate=int(audio.codec_context.sample_rate or 0) if audio else 0,
            )
    except (av.error.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: cannot probe media: {err}") from err


def decode_audio(path: str | os.PathLike, *, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream to mono int16 at ``sample_rate`` through ffmpeg."""
    try:
        out, _ = (
            ffmpeg.input(str(path))
            .output("pipe:", format="s16le", acodec="pcm_s16le", ac=1, ar=sample_rate)
            .global_args("-nostdin", "-loglevel", "error")
            .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as err:
        tail = err.stderr.decode(errors="replace")[-500:]
        raise MediaError(f"{path}: ffmpeg could not decode audio: {tail}") from err
    return np.frombuffer(out, dtype=np.int16).copy()


def peak_normalise(samples: np.ndarray, *, peak_dbfs: float) -> np.ndarray:
    """Scale int16 audio so its peak sits at ``peak_dbfs`` (paper 000: -3 dB); silence is left as is."""
    peak = int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0
    if peak == 0:
        return samples
    target = INT16_FULL_SCALE * 10 ** (peak_dbfs / 20)
    scaled = np.round(samples.astype(np.float64) * (target / peak))
    return np.clip(scaled, -INT16_FULL_SCALE, INT16_FULL_SCALE).astype(np.int16)


def build_media_shard(
    manifest: pd.DataFrame,
    shard: int,
    out_path: str | os.PathLike,
    *,
    sample_rate: int,
    peak_dbfs: float,
) -> pd.DataFrame:
    """Write the media shard file for the clips of ``shard``; return its QC table.

    A clip that cannot be read gets a QC row and an empty audio array; it never fails the shard.
    """
    rows = manifest[manifest["shard"] == shard]
    qc_rows = []
    attrs = {"stage": "media", "sample_rate": sample_rate, "peak_dbfs": peak_dbfs, "shard": shard}
    with ShardWriter(out_path, file_attrs=attrs) as writer:
        for clip in rows.itertuples():
            status, reason = "ok", ""
            audio = np.zeros(0, dtype=np.int16)
            try:
                facts = probe_media(clip.media)
                if facts.has_audio:
                    audio = peak_normalise(decode_audio(clip.media, sample_rate=sample_rate), peak_dbfs=peak_dbfs)
                else:
                    status, reason = "no_audio", "no audio stream; audio features will be empty"
                if not facts.has_video:
                    status, reason = "no_video", "no video stream; visual features will be empty"
            except MediaError as err:
                log.warning("%s", err)
                facts = ProbeFacts(False, False, 0.0, 0.0, 0, 0, 0, 0)
                status, reason = "unreadable", str(err)
            writer.add_clip(
                clip.id,
                {"audio": audio},
                {**asdict(facts), "qc_status": status, "qc_reason": reason, "media": clip.media},
            )
            qc_rows.append({"id": clip.id, "stage": "media", "status": status, "reason": reason, **asdict(facts)})
    return pd.DataFrame(qc_rows)
