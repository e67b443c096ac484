"""Paper recipes that do what their paper does (issue 13): Yu et al. 2024 (000)'s audio reads the
large MSP-Podcast Wav2Vec2 by a key of its own; Deng et al. 2023 (004) binarises at 0.5 without
tuned thresholds; Yu et al. 2023 (001)'s audio branch reads MFCC rows that cover the clip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from affectflow.faces.sampling import uniform_indices
from affectflow.features.registry import create_backbone
from affectflow.features.weights import load_manifest
from affectflow.training.sequences import align_modalities
from affectflow.training.settings import settings_from_run
from affectflow.training.track_store import TrackIndex, TrackStore, as_tensor
from affectflow.training.tracks import FoldTracks

from conftest import REPO

SR = 16000


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / "recipes" / f"{name}.yaml").read_text())


# -- 000: the large MSP-Podcast Wav2Vec2 by its own weights key -----------------------------------


def test_yu2024_audio_reads_the_large_msp_podcast_wav2vec2():
    config = load("emi_yu2024")
    audio = config["features"][config["train"]["runs"]["audio"]["backbone"]]
    assert audio["backbone"] == "wav2vec2_hidden"
    assert audio["weights"] == "wav2vec2_large_msp"

    manifest = load_manifest()
    generic, large = manifest["wav2vec2"], manifest["wav2vec2_large_msp"]
    assert generic["source"] != large["source"] and generic["path"] != large["path"]
    assert "wav2vec2-base" in generic["source"] and "large" not in generic["source"]
    assert "large" in large["source"] and "MSP-Podcast" in large["source"]
    assert "wav2vec2_hidden" in generic["used_by"] and "wav2vec2_hidden" in large["used_by"]
    # the generic base model stays what Deng et al. 2023 (004) names: "Wav2Vec2-base"
    assert load("au_deng2023")["features"]["wav2vec2_frames"]["weights"] == "wav2vec2"


def test_wav2vec2_hidden_reads_an_msp_podcast_emotion_model_directory(tmp_path):
    """The public large MSP-Podcast model is audEERING's (a Wav2Vec2 plus a regression head):
    wav2vec2_hidden loads its Wav2Vec2 layers from that directory as they are."""
    import torch
    from transformers import Wav2Vec2Config

    from affectflow.features.backbones.speech import emotion_model_class
    from affectflow.features.testing import vad_dir

    directory = vad_dir(tmp_path / "msp")
    audio = (np.random.default_rng(0).normal(0, 3000, SR)).astype(np.int16)
    features, _ = create_backbone("wav2vec2_hidden", weights=str(directory)).extract(audio, SR)

    model = emotion_model_class().from_pretrained(str(directory), config=Wav2Vec2Config.from_pretrained(directory))
    y = torch.from_numpy(audio.astype(np.float32) / 32768.0)
    y = ((y - y.mean()) / torch.sqrt(y.var(unbiased=False) + 1e-7))[None]
    with torch.inference_mode():
        expected = model.eval().wav2vec2(y).last_hidden_state[0].numpy()
    np.testing.assert_allclose(features, expected, atol=1e-4)


# -- 004: binarised at 0.5, thresholds an option ---------------------------------------------------


def test_deng2023_ensemble_binarises_at_half_without_tuned_thresholds():
    config = load("au_deng2023")
    assert config["ensemble"]["thresholds"] is False
    assert config["ensemble"]["method"] == "mean"
    header = (REPO / "config" / "recipes" / "au_deng2023.yaml").read_text().split("\n\n")[0]
    assert "not from the paper" in header and "in_sample" in header


# -- 001: the audio covers the clip ----------------------------------------------------------------


def _covered_s(rows: np.ndarray, params: dict) -> float:
    """Seconds of audio that the stacked MFCC ``rows`` (row indices) hold between them."""
    hop = params["hop_s"]
    starts = np.unique(rows) * params["stride"] * hop
    spans = np.stack([starts, starts + (params["n_stack"] - 1) * hop + params["win_s"]], axis=1)
    covered, reach = 0.0, -np.inf
    for start, end in spans:  # the union of the spans, sorted by start
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return covered


def _model_rows(sequence: np.ndarray, settings) -> np.ndarray:
    """The rows a clip-task model reads of ``sequence`` (FoldTracks.model_input)."""
    times = {1: np.zeros(len(sequence))}
    store = TrackStore(sequence.astype(np.float32), {1: (0, len(sequence))})
    tracks = FoldTracks(TrackIndex(["f"], [sequence.shape[1]], [{}], times), times, None, pd.DataFrame(), False,
                        {1}, {1}, stores=[store])
    return as_tensor(tracks.model_input(1, settings)).numpy()


@pytest.mark.parametrize("duration", [9.9, 12.0, 15.0])
def test_yu2023_audio_covers_the_clip(duration):
    """001 takes 32 *video* frames; its audio branch, alone or fused on the video's timeline, reads
    every MFCC row of the clip, and the rows reach from 0 s to near the clip's end."""
    config = load("eri_yu2023")
    runs = config["train"]["runs"]
    audio_key = runs["audio_branch"]["backbone"]
    backbone = create_backbone(audio_key, **config["features"][audio_key])
    samples = np.random.default_rng(0).normal(0, 3000, int(SR * duration)).astype(np.int16)
    features, times = backbone.extract(samples, SR)
    n_rows = len(features)
    row_index = np.arange(n_rows, dtype=np.float32)[:, None]  # a feature that names its row

    # the unimodal audio branch
    seen = _model_rows(row_index, settings_from_run(runs["audio_branch"]))[:, 0].astype(int)
    assert seen.tolist() == list(range(n_rows))
    assert _covered_s(seen, backbone.params) >= duration - 0.5

    # the fused run: the audio on the timeline of the 32 sampled video frames (30 fps)
    fused = runs["av_modality_dropout"]
    assert fused["backbone"] != audio_key and fused["fuse_with"] == [audio_key]
    n_video = config["faces"]["sampling"]["num_frames"]
    fps = config["media"]["fps"]
    video_times = uniform_indices(int(round(duration * fps)), n_video) / fps
    aligned = align_modalities([(np.zeros((n_video, 1), np.float32), video_times), (row_index, times)], [1, 1])
    seen = _model_rows(aligned, settings_from_run(fused))[:, 1].astype(int)
    assert len(seen) == n_video
    assert set(seen.tolist()) == set(range(n_rows))
    assert _covered_s(seen, backbone.params) >= duration - 0.5
