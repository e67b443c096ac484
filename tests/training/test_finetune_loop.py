"""The training loop fine-tunes a backbone (issue 15, the loop's part): a ``finetune`` block freezes
what it names (those weights never move, their BatchNorm statistics neither), trains the rest with
the encoder's own learning rate, and accumulated gradients make the step one larger batch makes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_clip_inputs import faces  # noqa: F401  (a fixture: a faces shard of real JPEG crops)
from test_train_loop import one_thread  # noqa: F401  (autouse: one intra-op thread, as the loop tests)

from affectflow.models import create_model
from affectflow.training.clip_inputs import crop_clips
from affectflow.training.loop import fit
from affectflow.training.sequences import Example
from affectflow.training.settings import TrainSettings

TEMPORAL = {"hidden": 8, "dropout": 0.0}  # no dropout: accumulated and whole batches draw no random masks


def _clips(n=8, frames=3, size=32, seed=0):
    """``n`` clips of random 32 px crops labelled by their mean red level (squashed into (0, 1))."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = torch.from_numpy(rng.normal(0, 1, (frames, 3, size, size)).astype(np.float32))
        out.append(Example.make(x, [float(torch.sigmoid(10 * x[:, 0].mean()))]))
    return out


def _settings(**finetune):
    return TrainSettings(
        model="finetune", finetune={"input": "crops", **finetune}, epochs=2, lr=1e-3, batch_size=8, seed=3,
        batching="random", loss="mse",
        model_params={"encoder": "resnet18_spatial",
                      "encoder_params": {"image_size": 32, "spatial_layers": 1, "dropout": 0.0},
                      "temporal": "gru", "temporal_params": TEMPORAL})


def _trained(settings, examples):
    model, _ = fit(settings, examples, input_dim=3, output_dim=1)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_frozen_layers_never_move_and_the_rest_learns_at_its_own_rate():
    examples = _clips()
    torch.manual_seed(3)  # fit seeds the model the same way: its initial weights
    initial = create_model("finetune", input_dim=3, output_dim=1, **_settings().model_params).state_dict()
    frozen = _trained(_settings(freeze=["encoder.trunk"]), examples)
    for key, value in frozen.items():
        if key.startswith("encoder.trunk."):  # weights and BatchNorm running statistics alike
            assert torch.equal(value, initial[key]), key
    moved = [k for k in frozen if not k.startswith("encoder.trunk.") and not torch.equal(frozen[k], initial[k])]
    assert any(k.startswith("encoder.spatial") for k in moved) and any(k.startswith("temporal") for k in moved)
    # a backbone learning rate of ~0 leaves the whole encoder in place, the temporal model still learns
    still = _trained(_settings(lr_backbone=1e-30), examples)
    for key, value in still.items():
        if key.startswith("encoder.") and value.dtype.is_floating_point and "running" not in key:
            assert torch.allclose(value, initial[key], atol=1e-20), key
    assert any(not torch.equal(still[k], initial[k]) for k in still if k.startswith("temporal."))


def test_accumulated_half_batches_make_the_step_of_the_whole_batch():
    examples = _clips()
    whole = _trained(_settings(freeze=["encoder.trunk"]), examples)  # BatchNorm frozen: no batch statistics
    settings = _settings(freeze=["encoder.trunk"], grad_accum=2)
    halves = _trained(TrainSettings(**{**settings.__dict__, "batch_size": 4}), examples)
    for key in whole:  # float rounding only (Adam divides by small gradients' magnitudes: ~1e-6 here)
        torch.testing.assert_close(halves[key], whole[key], rtol=1e-4, atol=2e-5)
    unaccumulated = _trained(TrainSettings(**{**_settings(freeze=["encoder.trunk"]).__dict__, "batch_size": 4}),
                             examples)
    # without accumulation: 4 steps of half batches, not 2 of whole ones
    assert max(float((unaccumulated[k] - whole[k]).abs().max()) for k in whole if whole[k].is_floating_point()) > 1e-3


def test_bad_finetune_blocks_are_refused_naming_the_key():
    with pytest.raises(ValueError, match="finetune.input 'video'"):
        _settings(input="video")
    with pytest.raises(ValueError, match=r"finetune: unknown key\(s\) \['lr_head'\]"):
        _settings(lr_head=1.0)
    with pytest.raises(ValueError, match="finetune.grad_accum must be an integer >= 1"):
        _settings(grad_accum=0)
    with pytest.raises(ValueError, match="a finetune block goes with model: finetune"):
        TrainSettings(model="gru", finetune={"input": "audio"})
    with pytest.raises(ValueError, match="finetune.freeze_depth must be an integer"):
        _settings(freeze_depth=1.5)
    with pytest.raises(ValueError, match="cannot go with carry_state"):
        fit(TrainSettings(**{**_settings(grad_accum=2).__dict__, "carry_state": True}), _clips(n=2), input_dim=3,
            output_dim=1)
    with pytest.raises(ValueError, match="freeze: no parameter is named 'encoder.trunc'"):
        fit(_settings(freeze=["encoder.trunc"]), _clips(n=2), input_dim=3, output_dim=1)


def test_crops_read_ahead_by_workers_train_the_same_model(faces):  # noqa: F811  (a fixture)
    """Lazy crop inputs from a real faces shard: read ahead by 2 DataLoader workers or in the training
    process, the same batches and so the same weights."""
    path, _ = faces
    clips = crop_clips([path], [1, 2, 4, 5], frames=3, size=32)
    examples = [Example.make(clip, [0.2 * n]) for n, clip in enumerate(clips.values())]
    assert all(not isinstance(e.x, torch.Tensor) for e in examples)  # nothing read yet
    settings = _settings(freeze=["encoder.trunk"])
    dropout = {"encoder_params": {**settings.model_params["encoder_params"], "dropout": 0.1},
               "temporal_params": {**TEMPORAL, "dropout": 0.1}}  # random masks: the same draws either way
    settings = TrainSettings(**{**settings.__dict__, "model_params": {**settings.model_params, **dropout}})
    inline = _trained(TrainSettings(**{**settings.__dict__, "batch_size": 2}), examples)
    ahead = _trained(TrainSettings(**{**settings.__dict__, "batch_size": 2,
                                      "finetune": {**settings.finetune, "workers": 2}}), examples)
    for key in inline:
        assert torch.equal(inline[key], ahead[key]), key
