"""State-carrying models are batched one segment window at a time (issue 14, point 2): a batch of
whole tracks is never padded to its longest track, and the result equals the whole-track
computation (the reference below pads whole tracks, then cuts windows, as the loop used to)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_train_loop import one_thread  # noqa: F401  (autouse: one intra-op thread, as the loop tests)

from affectflow.training import loop
from affectflow.training.batching import pad
from affectflow.training.inference import predict
from affectflow.training.loop import Trainer, collate
from affectflow.training.sequences import Example
from affectflow.training.settings import TrainSettings

D, K, LENGTH = 6, 2, 5


def tracks(lengths, seed=0) -> list[Example]:
    """Per-frame tracks of different lengths, a few labels invalid (-5, masked as VA does)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        y = rng.uniform(-1, 1, (n, K)).astype(np.float32)
        y[rng.random(n) < 0.1] = -5.0
        out.append(Example.make(rng.normal(0, 1, (n, D)).astype(np.float32), y, task="va"))
    return out


def settings(model: str, **params) -> TrainSettings:
    return TrainSettings(model=model, task="va", loss="ccc",
                         model_params={"hidden": 8, "per_frame": True, "sigmoid": False, **params},
                         segment_length=LENGTH, segment_stride=LENGTH, carry_state=True, lr=1e-2, batch_size=4,
                         seed=3)


MODELS = [("gru@2", {"rnn_layers": 2}), ("lstm", {}), ("transformer_lstm", {"dim": 8, "layers": 1, "heads": 2})]


def whole_track_steps(trainer: Trainer, batch: list[Example]) -> tuple[float, int]:
    """The previous computation: pad the whole tracks once, then step window by window."""
    x, mask, y, valid = collate(batch, trainer.device, trainer.per_frame)
    state, total, count = None, 0.0, 0
    for start in range(0, x.shape[1], LENGTH):
        m = mask[:, start : start + LENGTH]
        pred, state = trainer._forward(x[:, start : start + LENGTH], m, state)
        loss = trainer.loss_fn(pred.float(), y[:, start : start + LENGTH], valid[:, start : start + LENGTH])
        trainer._step(loss, "reference")
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        total, count = total + loss.item(), count + 1
    return total, count


@pytest.mark.parametrize(("model", "params"), MODELS, ids=[m for m, _ in MODELS])
def test_a_carried_batch_trains_as_the_whole_track_computation(model, params):
    batch = tracks([23, 7, 16, 3])
    ours = Trainer(settings(model, **params), input_dim=D, output_dim=K)
    reference = copy.deepcopy(ours)
    for n in range(2):  # two batches: the second starts from the first's weights and optimiser state
        torch.manual_seed(n)  # the same dropout draws for both (they share torch's global generator)
        got = ours.train_batch(batch, "ours")
        torch.manual_seed(n)
        want = whole_track_steps(reference, batch)
        assert got[1] == want[1] == 5  # ceil(23 / 5) windows, one optimiser step each
        assert got[0] == pytest.approx(want[0], rel=1e-5, abs=1e-6)
    for name, p in ours.model.state_dict().items():
        torch.testing.assert_close(p, reference.model.state_dict()[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(("model", "params"), MODELS, ids=[m for m, _ in MODELS])
def test_carried_prediction_equals_the_whole_track_computation(model, params):
    s = settings(model, **params)
    net = Trainer(s, input_dim=D, output_dim=K).model.eval()
    xs = [e.x for e in tracks([23, 7, 16, 3, 11], seed=1)]
    got = predict(net, xs, settings=s)
    # reference: every track padded to the longest, windows cut from the padded batch
    x, mask = pad(xs)
    pieces, state = [], None
    with torch.no_grad():
        for start in range(0, x.shape[1], LENGTH):
            piece, state = net(x[:, start : start + LENGTH], mask[:, start : start + LENGTH], state=state,
                               return_state=True)
            pieces.append(piece)
    whole = torch.cat(pieces, dim=1)
    for i, x_i in enumerate(xs):
        np.testing.assert_allclose(got[i], whole[i, : len(x_i)].numpy(), rtol=1e-5, atol=1e-6)


def test_no_carried_batch_pads_whole_tracks(monkeypatch):
    """Whatever is padded while training or predicting a carried batch is at most one window long."""
    widths = []
    real_pad = loop.pad

    def recording_pad(seqs, **kw):
        out, mask = real_pad(seqs, **kw)
        widths.append(out.shape[1])
        return out, mask

    monkeypatch.setattr(loop, "pad", recording_pad)
    s = settings("gru@2", rnn_layers=2)
    trainer = Trainer(s, input_dim=D, output_dim=K)
    batch = tracks([40, 12, 31])
    trainer.train_batch(batch, "t")
    predict(trainer.model, [e.x for e in batch], settings=s)
    assert widths and max(widths) == LENGTH
