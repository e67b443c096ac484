"""Media stage: probe each clip and extract its audio as 16 kHz mono 16-bit, peak-normalised.

The video itself is decoded once, later, by the faces stage (at the configured frame rate);
this stage keeps the probe facts that the later stages and the QC table need.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import av
import ffmpeg
import numpy as np
import pandas as pd

from affectflow.h5store import ShardWriter
from affectflow.runtime.atomic import atomic_path
from affectflow.runtime.ffmpeg import ffmpeg_exe

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
    video_codec: str = ""
    pix_fmt: str = ""
    n_frames: int = 0  # as the container states it (0: unknown)
    variable_fps: bool = False
    n_streams: int = 0


def _first_frame_rotation(container, video) -> int:
    """Display rotation in degrees (0, 90, 180, 270) from the first decoded frame.

    Recent ffmpeg keeps rotation in the display-matrix side data rather than in a ``rotate``
    tag, and PyAV exposes it on decoded frames; decoding one frame is cheap. A file whose
    first frame cannot be decoded reports the tag's value (or 0).
    """
    rotation = int(float(video.metadata.get("rotate", 0) or 0))
    try:
        frame = next(container.decode(video))
        rotation = int(round(getattr(frame, "rotation", rotation) or 0))
    except (av.error.FFmpegError, StopIteration, ValueError):
        pass
    return rotation % 360


def probe_media(path: str | os.PathLike) -> ProbeFacts:
    """Probe a media file with PyAV (no ffprobe binary needed).

    Besides the stream facts, the rotation comes from the first frame's display matrix and
    ``variable_fps`` is set when the average and the base frame rate disagree by more than 1%.
    """
    try:
        with av.open(str(path)) as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            duration_s = container.duration / av.time_base if container.duration else 0.0
            fps = float(video.average_rate or video.guessed_rate or 0) if video else 0.0
            if video is not None and video.duration and video.time_base:
                duration_s = max(duration_s, float(video.duration * video.time_base))
            if audio is not None and audio.duration and audio.time_base:
                duration_s = max(duration_s, float(audio.duration * audio.time_base))
            rotation, variable = 0, False
            if video is not None:
                base = float(video.base_rate or video.guessed_rate or 0)
                variable = bool(fps and base and abs(base - fps) > 0.01 * fps)
                rotation = _first_frame_rotation(container, video)
            return ProbeFacts(
                has_video=video is not None,
                has_audio=audio is not None,
                fps=fps,
                duration_s=float(duration_s),
                width=int(video.codec_context.width) if video else 0,
                height=int(video.codec_context.height) if video else 0,
                rotation=rotation,
                audio_sample_rate=int(audio.codec_context.sample_rate or 0) if audio else 0,
                video_codec=video.codec_context.name if video else "",
                pix_fmt=(video.codec_context.pix_fmt or "") if video else "",
                n_frames=int(video.frames or 0) if video else 0,
                variable_fps=variable,
                n_streams=len(container.streams),
            )
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaError(f"{path}: cannot probe media: {err}") from err


#: Frame rates above this are flagged (the fps filter still resamples them to the configured rate).
HIGH_FPS = 120.0
#: Clips shorter than this are flagged: they give only a few frames at 30 fps.
SHORT_CLIP_S = 0.5


def probe_flags(facts: ProbeFacts) -> list[str]:
    """Non-fatal QC flags for a readable clip, each ``name: what is done about it``.

    These never change the status: the clip is processed, and the flag documents the fallback.
    """
    flags = []
    if facts.has_video:
        if facts.fps > HIGH_FPS:
            flags.append(f"high_fps: {facts.fps:g} fps resampled to the configured rate")
        if facts.variable_fps:
            flags.append("variable_fps: resampled to a constant rate by ffmpeg's fps filter")
        if facts.width % 2 or facts.height % 2:
            flags.append(f"odd_size: {facts.width}x{facts.height} scaled to even dimensions")
        if facts.rotation:
            flags.append(f"rotated: display rotation {facts.rotation}; frames decoded upright")
        if facts.pix_fmt.startswith(("gray", "ya", "mono")):
            flags.append(f"grayscale: {facts.pix_fmt} converted to RGB (three equal channels)")
    if 0 < facts.duration_s < SHORT_CLIP_S:
        flags.append(f"short: {facts.duration_s:.2f} s; a few frames only")
    return flags


def decode_audio(path: str | os.PathLike, *, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream to mono int16 at ``sample_rate`` through ffmpeg.

    ``max_seconds`` keeps only the start of the clip (paper 002 cuts to 12 s).
    """
    input_args = {"t": max_seconds} if max_seconds else {}
    try:
        out, _ = (
            ffmpeg.input(str(path), **input_args)
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


def _empty_facts() -> ProbeFacts:
    return ProbeFacts(False, False, 0.0, 0.0, 0, 0, 0, 0)


def media_clip(
    media: str | os.PathLike, *, sample_rate: int, peak_dbfs: float, max_seconds: float | None = None
) -> tuple[ProbeFacts, np.ndarray, str, str, list[str]]:
    """Probe one clip and extract its audio: ``(facts, audio, status, reason, flags)``.

    Never raises for a bad file. Statuses (the fallback each implies):

    - ``ok``: audio extracted; the faces stage decodes the video.
    - ``no_audio``: no audio stream; audio features are empty (0 rows), the clip stays listed.
    - ``no_video``: no video stream (audio only); visual features are empty.
    - ``no_streams``: a container with neither; both are empty.
    - ``bad_audio``: the audio stream would not decode; audio is empty, the video is still used.
    - ``unreadable``: not a media file (zero bytes, truncated header, garbage): all empty.
    """
    audio = np.zeros(0, dtype=np.int16)
    try:
        facts = probe_media(media)
    except MediaError as err:
        return _empty_facts(), audio, "unreadable", str(err), []
    flags = probe_flags(facts)
    status, reason = "ok", ""
    if facts.has_audio:
        try:
            audio = peak_normalise(
                decode_audio(media, sample_rate=sample_rate, max_seconds=max_seconds), peak_dbfs=peak_dbfs
            )
        except MediaError as err:
            status, reason = "bad_audio", str(err)
        else:
            expected_s = min(facts.duration_s, max_seconds or facts.duration_s)
            if audio.size == 0:
                status, reason = "bad_audio", "the audio stream decoded to no samples; audio features will be empty"
            elif expected_s > SHORT_CLIP_S and audio.size < 0.8 * expected_s * sample_rate:
                flags.append(f"truncated_audio: decoded {audio.size / sample_rate:.2f} s of {expected_s:.2f} s; kept")
    if not facts.has_video and not facts.has_audio:
        status, reason = "no_streams", "neither audio nor video stream; features will be empty"
    elif not facts.has_video:
        status, reason = "no_video", "no video stream; visual features will be empty"
    elif not facts.has_audio:
        status, reason = "no_audio", "no audio stream; audio features will be empty"
    return facts, audio, status, reason, flags


def build_media_shard(
    manifest: pd.DataFrame,
    shard: int | str,
    out_path: str | os.PathLike,
    *,
    sample_rate: int,
    peak_dbfs: float,
    max_seconds: float | None = None,
) -> pd.DataFrame:
    """Write the media shard file for the clips of ``shard``; return its QC table.

    A clip that cannot be read gets a QC row (status, reason, flags) and an empty audio array;
    it never fails the shard: even an unexpected error in one clip is recorded as ``error``.
    """
    rows = manifest[manifest["shard"].astype(str) == str(shard)]
    qc_rows = []
    attrs = {"stage": "media", "sample_rate": sample_rate, "peak_dbfs": peak_dbfs, "shard": shard,
             "max_seconds": max_seconds or 0.0}
    with ShardWriter(out_path, file_attrs=attrs) as writer:
        for clip in rows.itertuples():
            try:
                facts, audio, status, reason, flags = media_clip(
                    clip.media, sample_rate=sample_rate, peak_dbfs=peak_dbfs, max_seconds=max_seconds
                )
            except Exception as err:  # noqa: BLE001 - one bad clip must not fail the shard
                log.exception("clip %s: unexpected error", clip.id)
                facts, audio, flags = _empty_facts(), np.zeros(0, dtype=np.int16), []
                status, reason = "error", f"{clip.media}: {type(err).__name__}: {err}"
            if status != "ok":
                log.warning("clip %s: %s: %s", clip.id, status, reason)
            writer.add_clip(
                clip.id,
                {"audio": audio},
                {**asdict(facts), "qc_status": status, "qc_reason": reason, "qc_flags": "; ".join(flags),
                 "media": clip.media, "name": str(getattr(clip, "name", ""))},
            )
            qc_rows.append({"id": clip.id, "stage": "media", "status": status, "reason": reason,
                            "flags": "; ".join(flags), "audio_s": len(audio) / sample_rate, **asdict(facts)})
    return pd.DataFrame(qc_rows)


def write_media_shard(clips: Iterable[Sequence], root: str | os.PathLike, shard: str, out_path: str | os.PathLike,
                      qc_path: str | os.PathLike, *, sample_rate: int, peak_dbfs: float,
                      max_seconds: float | None = None) -> pd.DataFrame:
    """The media job: :func:`build_media_shard` for the shard's ``clips`` (``(id, name, media, ...)``,
    media relative to the data set's ``root``: :meth:`affectflow.data.listing.Listing.shard_clips`),
    and its QC table written (tab-separated, atomically) to ``qc_path``."""
    rows = [(int(c[0]), str(c[1]), os.path.join(root, c[2]), str(shard)) for c in clips]
    table = pd.DataFrame(rows, columns=["id", "name", "media", "shard"])
    qc = build_media_shard(table, shard, out_path, sample_rate=sample_rate, peak_dbfs=peak_dbfs,
                           max_seconds=max_seconds)
    with atomic_path(qc_path) as tmp:
        qc.to_csv(tmp, sep="\t", index=False)
    return qc
