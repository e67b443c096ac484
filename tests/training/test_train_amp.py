"""The mixed-precision (bf16 autocast) training path, exercised on the CPU: no GPU is needed to
check that autocast reaches the model, the loss stays float32 and finite, and the weights stay
float32 and move."""

from __future__ import annotations

import numpy as np
import torch

from affectflow.training.loop import Trainer
from affectflow.training.sequences import Example
from affectflow.training.settings import TrainSettings


def _examples(per_frame: bool, n: int = 8) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        x = rng.normal(size=(12, 6)).astype(np.float32)
        y = np.tanh(x[:, :2]) if per_frame else np.tanh(x[:, :2].mean(0))
        out.append(Example.make(x, y, task="va" if per_frame else "clip"))
    return out


def _run_amp_step(settings: TrainSettings, examples: list[Example]):
    trainer = Trainer(settings, input_dim=6, output_dim=2, device="cpu")
    assert trainer.amp is False  # off by default on CPU
    trainer.amp = True
    dtypes = []
    for module in trainer.model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
            module.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss, count = trainer.train_batch(examples, "amp test")
    return trainer, dtypes, before, loss / count


def test_clip_model_trains_under_bf16_autocast():
    settings = TrainSettings(model="tcn_transformer", model_params={"hidden": 16, "dim": 16, "heads": 2, "layers": 1,
                                                                    "tcn_layers": 2}, seed=0)
    trainer, dtypes, before, loss = _run_amp_step(settings, _examples(per_frame=False))
    assert torch.bfloat16 in dtypes  # autocast reached the model's linear layers
    assert np.isfinite(loss)
    state = trainer.model.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in state.items())  # weights stay in their own dtype
    assert any(not torch.equal(v, before[k]) for k, v in state.items() if v.is_floating_point())


def test_per_frame_model_trains_under_bf16_autocast():
    settings = TrainSettings(model="gru@2", task="va", loss="ccc", model_params={"hidden": 16, "per_frame": True},
                             segment_length=6, segment_stride=6, seed=0)
    trainer, dtypes, _, loss = _run_amp_step(settings, _examples(per_frame=True))
    assert torch.bfloat16 in dtypes and np.isfinite(loss)
