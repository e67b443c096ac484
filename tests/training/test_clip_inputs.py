"""Raw per-clip inputs for fine-tuning (affectflow.training.clip_inputs): crops decode to the images
written, resized and normalised as an independent numpy computation says; frames are sampled
uniformly over the valid ones; audio is cut to its window and normalised over it, slices keeping the
window's statistics; bad shards fail naming the file; workers read exactly what the main process does."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

from affectflow.faces.crop import decode_jpeg, encode_jpeg
from affectflow.features.backbones.torch_image import IMAGENET_MEAN, IMAGENET_STD
from affectflow.h5store import ShardWriter
from affectflow.runtime.cache_errors import DamagedCacheError
from affectflow.training.clip_inputs import (
    AudioClip,
    CropClip,
    audio_clips,
    close_handles,
    crop_clips,
    uniform_frames,
)
from affectflow.training.read_ahead import prefetched

# clip 1: 20 frames, these 10 valid (interleaved with invalid ones)
VALID_1 = [1, 2, 4, 5, 6, 9, 11, 12, 14, 17]
FPS = 25.0


def _image(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth RGB image (JPEG keeps it within a few levels), different for every draw."""
    y, x = np.mgrid[0:side, 0:side] / side
    channels = [128 + 90 * np.sin(2 * np.pi * (rng.uniform(0.3, 1.2) * x + rng.uniform(0.3, 1.2) * y)
                                   + rng.uniform(0, 2 * np.pi)) for _ in range(3)]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def _faces_clip(rng, valid: list[bool], side: int | list[int] = 32):
    sides = side if isinstance(side, list) else [side] * len(valid)
    images = [_image(rng, s) if ok else None for ok, s in zip(valid, sides, strict=True)]
    crops = [encode_jpeg(im, quality=95) if im is not None else b"" for im in images]
    arrays = {"crops": crops, "valid": np.array(valid, bool),
              "timestamps": np.arange(len(valid), dtype=np.float64) / FPS}
    return arrays, images


@pytest.fixture
def faces(tmp_path):
    """A faces shard: clip 1 (VALID_1 of 20), 2 (2 valid of 5), 3 (none valid), 4 (64 px crops but
    one of 32 px), 5 (valid, never asked for); and the images written, by clip."""
    rng = np.random.default_rng(0)
    path = tmp_path / "faces" / "shard-0.h5"
    path.parent.mkdir()
    written = {}
    clips = {1: ([i in VALID_1 for i in range(20)], 32), 2: ([False, True, False, False, True], 32),
             3: ([False] * 4, 32), 4: ([True] * 3, [64, 32, 64]), 5: ([True] * 3, 32)}
    with ShardWriter(path, file_attrs={"stage": "faces"}) as writer:
        for clip, (valid, side) in clips.items():
            arrays, written[clip] = _faces_clip(rng, valid, side)
            writer.add_clip(clip, arrays)
    yield path, written
    close_handles()


def test_uniform_frames_picks_the_expected_valid_rows():
    valid = np.isin(np.arange(20), VALID_1)
    assert uniform_frames(valid, 4).tolist() == [1, 5, 11, 17]  # positions 0, 3, 6, 9 of 10
    assert uniform_frames(valid, 3).tolist() == [1, 6, 17]  # 0, 4.5 -> 4 (numpy rounds half to even), 9
    assert uniform_frames(valid, 1).tolist() == [1]
    assert uniform_frames(valid, 0).tolist() == VALID_1
    assert uniform_frames(valid, 10).tolist() == VALID_1
    assert uniform_frames(valid, 50).tolist() == VALID_1  # fewer valid than asked: all of them
    assert uniform_frames(np.zeros(6, bool), 4).tolist() == []
    with pytest.raises(ValueError, match="frames must be >= 0"):
        uniform_frames(valid, -1)


def test_crop_clips_sample_valid_frames_and_leave_out_clips_without_any(faces):
    path, _ = faces
    clips = crop_clips([path], [1, 2, 3, 4, 99], frames=4, size=32)
    assert sorted(clips) == [1, 2, 4]  # 3: no valid frame, 5: not asked for, 99: in no shard
    assert clips[1].frames.tolist() == [1, 5, 11, 17]
    np.testing.assert_allclose(clips[1].times, np.array([1, 5, 11, 17]) / FPS)
    assert clips[2].frames.tolist() == [1, 4]  # fewer valid than asked
    assert len(clips[1]) == 4 and clips[1].shape == (4, 3, 32, 32)
    every = crop_clips([path], [1], frames=0, size=32)
    assert every[1].frames.tolist() == VALID_1


def test_crops_decode_to_the_images_written_and_are_normalised(faces):
    path, written = faces
    raw = crop_clips([path], [1, 2], frames=0, size=32, mean=(0, 0, 0), std=(1, 1, 1))
    for clip, x in raw.items():
        images = np.stack([written[clip][f] for f in x.frames]).astype(np.float32) / 255
        got = x.read()
        assert got.dtype == torch.float32 and got.shape == (len(x), 3, 32, 32)
        assert np.abs(got.permute(0, 2, 3, 1).numpy() - images).mean() < 3 / 255
    # ImageNet statistics by default: against numpy on the very bytes decoded
    x = crop_clips([path], [1], frames=3, size=32)[1]
    with h5py.File(path, "r") as h5:
        decoded = np.stack([decode_jpeg(h5["clips/1/crops"][f].tobytes()) for f in x.frames]).astype(np.float64)
    expected = (decoded / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x.read().permute(0, 2, 3, 1).numpy(), expected, atol=1e-5)


def _antialiased_halving(image: np.ndarray) -> np.ndarray:
    """Bilinear, antialiased 2x reduction by hand: per axis, output i is input 2i-1 .. 2i+2 weighted
    1/8, 3/8, 3/8, 1/8 (a triangle twice as wide), renormalised where the border cuts it off."""
    def axis(a: np.ndarray) -> np.ndarray:  # reduces axis 0
        n = a.shape[0] // 2
        out = np.zeros((n, *a.shape[1:]))
        for i in range(n):
            taps = [(j, w) for j, w in zip(range(2 * i - 1, 2 * i + 3), (1, 3, 3, 1)) if 0 <= j < a.shape[0]]
            out[i] = sum(w * a[j] for j, w in taps) / sum(w for _, w in taps)
        return out
    return axis(axis(image).swapaxes(0, 1)).swapaxes(0, 1)


def test_crops_of_another_size_are_resized_as_the_backbone_does(faces):
    path, _ = faces
    x = crop_clips([path], [4], frames=0, size=32, mean=(0, 0, 0), std=(1, 1, 1))[4]
    got = x.read().permute(0, 2, 3, 1).numpy()
    images = x.images()
    assert [im.shape[0] for im in images] == [64, 32, 64]
    for k, im in enumerate(images):
        expected = im / 255.0 if im.shape[0] == 32 else _antialiased_halving(im / 255.0)
        np.testing.assert_allclose(got[k], expected, atol=1e-5)


def test_crop_slices_compose(faces):
    path, _ = faces
    x = crop_clips([path], [1], frames=0, size=32)[1]
    whole = x.read()
    part = x[1:8][2:]
    assert part.frames.tolist() == x[3:8].frames.tolist() == VALID_1[3:8]
    np.testing.assert_array_equal(part.times, x.times[3:8])
    assert torch.equal(part.read(), whole[3:8])
    picked = x[np.array([0, 4, 9])]
    assert picked.frames.tolist() == [VALID_1[0], VALID_1[4], VALID_1[9]]
    assert torch.equal(picked.read(), whole[[0, 4, 9]])
    assert x[5:5].read().shape == (0, 3, 32, 32)
    with pytest.raises(TypeError, match="slice"):
        x[2]


@pytest.fixture
def media(tmp_path):
    """A 16 kHz media shard: clip 1 (3 s, with a DC offset), 2 (0.5 s), 3 (no audio); the audio by clip."""
    rng = np.random.default_rng(1)
    audio = {1: (rng.normal(2000, 3000, 48000)).clip(-32768, 32767).astype(np.int16),
             2: rng.integers(-20000, 20000, 8000).astype(np.int16), 3: np.zeros(0, np.int16)}
    path = tmp_path / "media" / "shard-0.h5"
    path.parent.mkdir()
    with ShardWriter(path, file_attrs={"stage": "media", "sample_rate": 16000}) as writer:
        for clip, samples in audio.items():
            writer.add_clip(clip, {"audio": samples})
    yield path, audio
    close_handles()


def _normalised(samples: np.ndarray) -> np.ndarray:
    y = samples.astype(np.float64) / 32768
    return (y - y.mean()) / np.sqrt(y.var() + 1e-7)


def test_audio_is_cut_to_its_window_and_normalised_over_it(media):
    path, audio = media
    clips = audio_clips([path], [1, 2, 3], window_s=1.0)
    assert sorted(clips) == [1, 2]  # 3: no audio
    assert len(clips[1]) == 16000 and len(clips[2]) == 8000  # 2 is shorter than the window
    got = clips[1].read()
    assert got.dtype == torch.float32 and got.shape == (16000,)
    np.testing.assert_allclose(got.numpy(), _normalised(audio[1][:16000]), atol=1e-5)
    np.testing.assert_allclose(clips[2].read().numpy(), _normalised(audio[2]), atol=1e-5)
    whole = audio_clips([path], [1], window_s=0)[1]
    assert len(whole) == 48000
    np.testing.assert_allclose(whole.read().numpy(), _normalised(audio[1]), atol=1e-5)
    raw = audio_clips([path], [1], window_s=0.5, normalize=False)[1]
    np.testing.assert_array_equal(raw.read().numpy(), audio[1][:8000].astype(np.float32) / 32768)


def test_audio_slices_keep_the_window_statistics(media):
    path, audio = media
    # a slice read first (the window's statistics not yet computed) and alone
    part = audio_clips([path], [1], window_s=2.0)[1][1000:9000][500:]
    assert (part.start, part.stop, len(part)) == (1500, 9000, 7500)
    np.testing.assert_allclose(part.read().numpy(), _normalised(audio[1][:32000])[1500:9000], atol=1e-5)
    whole = audio_clips([path], [1], window_s=2.0)[1]
    assert torch.equal(whole[1500:9000].read(), whole.read()[1500:9000])
    assert len(whole[31990:40000]) == 10 and len(whole[5:2]) == 0
    with pytest.raises(ValueError, match="step 1"):
        whole[::2]


def test_a_shard_at_another_sample_rate_is_refused_naming_it(tmp_path):
    path = tmp_path / "shard-8k.h5"
    with ShardWriter(path, file_attrs={"sample_rate": 8000}) as writer:
        writer.add_clip(1, {"audio": np.zeros(100, np.int16)})
    with pytest.raises(ValueError, match=f"{path}.*8000 Hz, not the 16000 Hz"):
        audio_clips([path], [1], window_s=1.0)


def test_a_missing_clip_or_damaged_shard_fails_naming_the_shard(faces, media, tmp_path):
    path, _ = faces
    with pytest.raises(DamagedCacheError, match=f"{path}, clip 99"):
        CropClip(path, 99, np.array([0]), size=32).read()
    with pytest.raises(DamagedCacheError, match=f"{media[0]}, clip 7"):
        AudioClip(media[0], 7, 0, 10).read()
    with pytest.raises(ValueError, match=f"{path}: clip 1 frame 0 has no crop"):
        CropClip(path, 1, np.array([0]), size=32).read()  # an invalid frame
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(path.read_bytes()[:2000])  # cut short, as an interrupted copy
    with pytest.raises(DamagedCacheError, match=str(damaged)):
        crop_clips([damaged], [1], frames=4, size=32)
    # a worker's error reaches the main process with its message
    with pytest.raises(DamagedCacheError, match=f"{path}, clip 99"):
        list(prefetched([[CropClip(path, 99, np.array([0]), size=32)]], None, 2))


def _pid(_x) -> torch.Tensor:
    return torch.tensor([os.getpid()])


def test_prefetched_workers_read_exactly_what_the_main_process_reads(faces, media):
    crops = crop_clips([faces[0]], [1, 2, 4], frames=4, size=32)
    sounds = audio_clips([media[0]], [1, 2], window_s=1.0)
    batches = [[crops[1], crops[2][1:]], [sounds[1][100:600], crops[4]], [sounds[2]], [crops[1][:2], sounds[1]]]
    inline = list(prefetched(batches, None, 0))
    workers = list(prefetched(batches, None, 2))
    assert [len(b) for b in workers] == [len(b) for b in batches]
    for a, b, batch in zip(inline, workers, batches, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
        assert all(torch.equal(u, x.read()) for u, x in zip(a, batch, strict=True))
    # read in other processes with workers, in this one without
    assert {int(t) for b in prefetched(batches, _pid, 0) for t in b} == {os.getpid()}
    assert os.getpid() not in {int(t) for b in prefetched(batches, _pid, 2) for t in b}
