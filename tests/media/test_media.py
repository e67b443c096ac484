"""Tests of the media stage: probing, audio decoding, peak normalisation, the media shard."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from affectflow.h5store import iter_clips, read_file_attrs
from affectflow.media import MediaError, build_media_shard, decode_audio, peak_normalise, probe_media
from affectflow.runtime.ffmpeg import ffmpeg_exe

SR = 16000


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *args], check=True,
                   capture_output=True, timeout=60)


def make_clip(path, *, duration=2.0, fps=25, size="160x120", audio=True, freq=440, audio_rate=44100):
    args = ["-f", "lavfi", "-i", f"testsrc=duration={duration}:size={size}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency={freq}:duration={duration}:sample_rate={audio_rate}"]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
    ffmpeg(*args, str(path))
    return path


def make_wav(path, *, duration=1.0, freq=440, sample_rate=44100):
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={freq}:duration={duration}:sample_rate={sample_rate}",
           "-c:a", "pcm_s16le", str(path))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    return {
        "av": make_clip(d / "av.mp4", duration=2.0, fps=25, size="160x120"),
        "silent_video": make_clip(d / "video_only.mp4", duration=1.0, fps=30, size="64x48", audio=False),
        "wav": make_wav(d / "tone.wav", duration=1.5, freq=440),
        "empty": empty,
    }


def test_probe_media_video_with_audio(clips):
    facts = probe_media(clips["av"])
    assert facts.has_video and facts.has_audio
    assert facts.fps == pytest.approx(25.0)
    assert facts.duration_s == pytest.approx(2.0, abs=0.1)
    assert (facts.width, facts.height) == (160, 120)
    assert facts.audio_sample_rate == 44100
    assert facts.rotation == 0


def test_probe_media_video_only(clips):
    facts = probe_media(clips["silent_video"])
    assert facts.has_video and not facts.has_audio
    assert facts.fps == pytest.approx(30.0)
    assert facts.duration_s == pytest.approx(1.0, abs=0.1)
    assert (facts.width, facts.height) == (64, 48)
    assert facts.audio_sample_rate == 0


def test_probe_media_audio_only(clips):
    facts = probe_media(clips["wav"])
    assert facts.has_audio and not facts.has_video
    assert facts.fps == 0.0
    assert (facts.width, facts.height) == (0, 0)
    assert facts.duration_s == pytest.approx(1.5, abs=0.02)
    assert facts.audio_sample_rate == 44100


def test_probe_media_unreadable(clips, tmp_path):
    with pytest.raises(MediaError, match="empty.mp4"):
        probe_media(clips["empty"])
    with pytest.raises(MediaError):
        probe_media(tmp_path / "does_not_exist.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError):
        probe_media(garbage)


def test_decode_audio_wav_resampled_mono_and_pitch(clips):
    samples = decode_audio(clips["wav"], sample_rate=SR)
    assert samples.dtype == np.int16
    assert samples.ndim == 1
    assert abs(len(samples) - 1.5 * SR) <= 0.01 * SR
    assert np.abs(samples).max() > 1000  # not silence
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), d=1 / SR)
    assert freqs[np.argmax(spectrum)] == pytest.approx(440, abs=2)


def test_decode_audio_from_mp4_stereo_input_is_mono(tmp_path):
    # a stereo stream with different tones per channel is downmixed to one channel
    path = tmp_path / "stereo.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=48000",
           "-f", "lavfi", "-i", "sine=frequency=1000:duration=1:sample_rate=48000",
           "-filter_complex", "[0:a][1:a]join=inputs=2:channel_layout=stereo[a]", "-map", "[a]",
           "-c:a", "aac", str(path))
    samples = decode_audio(path, sample_rate=SR)
    assert samples.dtype == np.int16 and samples.ndim == 1
    assert abs(len(samples) - SR) <= 0.05 * SR
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(samples), d=1 / SR)
    peaks = sorted(freqs[np.argsort(spectrum)[-40:]])
    assert any(abs(f - 440) < 5 for f in peaks) and any(abs(f - 1000) < 5 for f in peaks)


def test_decode_audio_av_clip_length(clips):
    samples = decode_audio(clips["av"], sample_rate=SR)
    # AAC adds priming/padding; allow 50 ms
    assert abs(len(samples) - 2.0 * SR) <= 0.05 * SR
    core = samples[SR // 4 : -SR // 4].astype(np.float64)
    freqs = np.fft.rfftfreq(len(core), d=1 / SR)
    assert freqs[np.argmax(np.abs(np.fft.rfft(core)))] == pytest.approx(440, abs=3)


def test_decode_audio_unreadable(clips):
    with pytest.raises(MediaError, match="empty.mp4"):
        decode_audio(clips["empty"], sample_rate=SR)


@pytest.mark.parametrize("amplitude", [100, 5000, 32767])
def test_peak_normalise_sets_peak(amplitude):
    t = np.arange(SR) / SR
    samples = np.round(amplitude * np.sin(2 * np.pi * 50 * t)).astype(np.int16)
    out = peak_normalise(samples, peak_dbfs=-3.0)
    assert out.dtype == np.int16
    target = 32767 * 10 ** (-3 / 20)  # about 23197
    assert abs(int(np.abs(out.astype(np.int32)).max()) - target) <= 1
    # the shape is kept (linear scaling)
    gain = target / np.abs(samples.astype(np.int32)).max()
    np.testing.assert_allclose(out, samples * gain, atol=1.0)


def test_peak_normalise_negative_peak_and_int16_min():
    samples = np.array([0, 10, -32768, 200], dtype=np.int16)
    out = peak_normalise(samples, peak_dbfs=-3.0)
    assert out.dtype == np.int16
    assert out[2] < 0
    assert abs(abs(int(out[2])) - 32767 * 10 ** (-3 / 20)) <= 1
    assert out[0] == 0


def test_peak_normalise_silence_and_empty_unchanged():
    silence = np.zeros(1000, dtype=np.int16)
    out = peak_normalise(silence, peak_dbfs=-3.0)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, silence)
    empty = np.zeros(0, dtype=np.int16)
    assert peak_normalise(empty, peak_dbfs=-3.0).size == 0


def test_build_media_shard(clips, tmp_path):
    manifest = pd.DataFrame({
        "id": [1, 2, 3, 4],
        "split": ["train", "train", "val", "test"],
        "subject": ["", "", "", ""],
        "media": [str(clips["av"]), str(clips["silent_video"]), str(clips["empty"]), str(clips["av"])],
        "shard": [0, 0, 0, 1],  # clip 4 belongs to another shard
    })
    out = tmp_path / "media" / "shard0.h5"
    qc = build_media_shard(manifest, 0, out, sample_rate=SR, peak_dbfs=-3.0)

    assert out.exists()
    assert list(qc["id"]) == [1, 2, 3]
    assert dict(zip(qc["id"], qc["status"])) == {1: "ok", 2: "no_audio", 3: "unreadable"}
    assert (qc["stage"] == "media").all()
    assert "empty.mp4" in qc.set_index("id").loc[3, "reason"]

    attrs = read_file_attrs(out)
    assert attrs["stage"] == "media"
    assert attrs["sample_rate"] == SR
    assert attrs["peak_dbfs"] == pytest.approx(-3.0)
    assert attrs["shard"] == 0

    stored = {cid: (arrays, a) for cid, arrays, a in iter_clips(out)}
    assert set(stored) == {"1", "2", "3"}
    audio, a = stored["1"]
    assert a["qc_status"] == "ok"
    assert a["has_video"] and a["has_audio"]
    assert a["media"] == str(clips["av"])
    assert a["width"] == 160 and a["height"] == 120
    assert audio["audio"].dtype == np.int16
    assert abs(len(audio["audio"]) - 2 * SR) <= 0.05 * SR
    assert abs(int(np.abs(audio["audio"].astype(np.int32)).max()) - 32767 * 10 ** (-3 / 20)) <= 1

    audio, a = stored["2"]
    assert a["qc_status"] == "no_audio"
    assert a["has_video"] and not a["has_audio"]
    assert audio["audio"].size == 0

    audio, a = stored["3"]
    assert a["qc_status"] == "unreadable"
    assert not a["has_video"] and not a["has_audio"]
    assert audio["audio"].size == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["shard0.h5"]


def test_build_media_shard_audio_only_is_no_video(clips, tmp_path):
    manifest = pd.DataFrame({"id": [7], "split": ["train"], "subject": [""], "media": [str(clips["wav"])],
                             "shard": [2]})
    qc = build_media_shard(manifest, 2, tmp_path / "s.h5", sample_rate=SR, peak_dbfs=-3.0)
    assert list(qc["status"]) == ["no_video"]
    (_, arrays, attrs), = list(iter_clips(tmp_path / "s.h5"))
    # the audio is still extracted
    assert abs(len(arrays["audio"]) - 1.5 * SR) <= 0.02 * SR
    assert attrs["qc_status"] == "no_video"
