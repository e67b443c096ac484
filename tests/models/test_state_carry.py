"""Segment state carry and early fusion as in Liu et al. 2023 (003): the LSTM/GRU state crosses
segments (eqs. 3, 4, 7), only the last layer's state is carried, the Transformer->LSTM runs its
Transformer per segment, and early fusion has its fully connected layer (eq. 1)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from affectflow.models import create_model, masked_mean

D, K = 12, 3
RECURRENT = [("gru@2", {}), ("lstm", {}), ("transformer_lstm", {}),
             ("fusion", {"fusion": "early", "encoder": "gru@2", "modality_dims": [8, 4]})]


def per_frame(name, **params):
    torch.manual_seed(0)
    return create_model(name, input_dim=D, output_dim=K, per_frame=True, sigmoid=False, dropout=0.0,
                        **params).eval()


def segments(batch=2, first=5, second=7):
    torch.manual_seed(1)
    x1, x2 = torch.randn(batch, first, D), torch.randn(batch, second, D)
    return (x1, torch.ones(batch, first, dtype=torch.bool)), (x2, torch.ones(batch, second, dtype=torch.bool))


def recurrent_encoder(model):
    inner = model.model if hasattr(model, "model") else model  # early fusion wraps a SequenceModel
    return inner.encoder.encoders[-1]


def zeros_like_state(state):
    return tuple(torch.zeros_like(s) for s in state) if isinstance(state, tuple) else torch.zeros_like(state)


@pytest.mark.parametrize(("name", "params"), RECURRENT, ids=[n for n, _ in RECURRENT])
@pytest.mark.parametrize("layers", [1, 2])
def test_a_carried_state_changes_the_second_segment_and_a_reset_does_not(name, params, layers):
    model = per_frame(name, rnn_layers=layers, **params)
    assert model.carries_state
    (x1, m1), (x2, m2) = segments()
    with torch.no_grad():
        first, state = model(x1, m1, return_state=True)
        torch.testing.assert_close(first, model(x1, m1), rtol=0, atol=0)  # no state: the segment alone
        alone = model(x2, m2)
        carried, _ = model(x2, m2, state=state, return_state=True)
        reset, _ = model(x2, m2, state=zeros_like_state(state), return_state=True)
    # a carried state changes the second segment's output ...
    assert (carried - alone).abs().max() > 1e-3
    # ... and a reset (zero) state gives exactly the output of the segment alone (h_0 = 0)
    assert torch.equal(reset, alone)


@pytest.mark.parametrize("cell", ["gru@2", "lstm"])
def test_only_the_last_layers_state_is_carried(cell):
    model = per_frame(cell, rnn_layers=3, hidden=16)
    encoder = recurrent_encoder(model)
    (x1, m1), (x2, m2) = segments()
    with torch.no_grad():
        _, state = model(x1, m1, return_state=True)
        # PyTorch's own final state of every layer after the first segment
        _, every_layer = encoder.rnn(pack_padded_sequence(x1, m1.sum(1), batch_first=True, enforce_sorted=False))
        carried, _ = model(x2, m2, state=state, return_state=True)
        from_every_layer = model(x2, m2, state=every_layer)
        # the lower layers' final states do not reach the next segment
        perturbed = tuple(s.clone() for s in every_layer) if cell == "lstm" else (every_layer.clone(),)
        for s in perturbed:
            s[:-1] += 5.0
        from_perturbed = model(x2, m2, state=perturbed if cell == "lstm" else perturbed[0])
        # what the paper's carry computes: last layer from the carried state, lower layers from zeros
        last = every_layer if cell == "lstm" else (every_layer,)
        h0 = tuple(torch.cat([torch.zeros_like(s[:-1]), s[-1:]]) for s in last)
        expected_h, _ = encoder.rnn(x2, h0 if cell == "lstm" else h0[0])
        # carrying every layer (PyTorch's default) is a different model
        all_layers_h, _ = encoder.rnn(x2, every_layer)
    parts = state if cell == "lstm" else (state,)
    assert all(p.shape == (1, 2, 16) for p in parts)  # (directions, batch, hidden): the last layer only
    for part, full in zip(parts, last, strict=True):
        torch.testing.assert_close(part, full[-1:], rtol=0, atol=0)
    torch.testing.assert_close(from_every_layer, carried, rtol=0, atol=0)
    torch.testing.assert_close(from_perturbed, carried, rtol=0, atol=0)
    torch.testing.assert_close(carried, model.head(expected_h))
    assert (model.head(all_layers_h) - carried).abs().max() > 1e-4


def test_a_state_of_the_wrong_depth_is_refused():
    model = per_frame("gru@2", rnn_layers=2, hidden=16)
    (x1, m1), _ = segments()
    with pytest.raises(ValueError, match="does not fit a GRU of 2 layer"):
        model(x1, m1, state=torch.zeros(3, 2, 16))


def test_one_layer_carry_is_pytorchs_own_and_the_demo_gru_is_unchanged():
    # one layer: the last layer's state is the whole state, so the carry is what it was before
    # (PyTorch's state passed on as it is)
    model = per_frame("gru@2", hidden=16)
    rnn = recurrent_encoder(model).rnn
    (x1, m1), (x2, m2) = segments()
    with torch.no_grad():
        _, state = model(x1, m1, return_state=True)
        carried = model(x2, m2, state=state)
        _, h1 = rnn(x1)
        before, _ = rnn(x2, h1)
    torch.testing.assert_close(state, h1, rtol=0, atol=0)
    torch.testing.assert_close(carried, model.head(before), rtol=0, atol=0)
    # the walking skeleton's ``gru`` (one GRU layer, no carry): keys and output as they were
    torch.manual_seed(0)
    demo = create_model("gru", input_dim=D, output_dim=K).eval()
    assert sorted(demo.state_dict()) == ["gru.bias_hh_l0", "gru.bias_ih_l0", "gru.weight_hh_l0", "gru.weight_ih_l0",
                                         "head.bias", "head.weight", "project.0.bias", "project.0.weight"]
    assert not getattr(demo, "carries_state", False)
    x, mask = torch.randn(2, 6, D), torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        projected = demo.project(x)
        h, _ = demo.gru(projected)
        expected = torch.sigmoid(demo.head(torch.cat([masked_mean(h, mask), masked_mean(projected, mask)], -1)))
        torch.testing.assert_close(demo(x, mask), expected)


def test_transformer_lstm_runs_its_transformer_per_segment_and_carries_the_lstm():
    # eqs. 6-7: f_i^h = TRMEncoder(f_i^m) per segment; g_i, h_i = LSTM(f_i^h, h_{i-1}). With one
    # LSTM layer, segment by segment with the carry equals one LSTM pass over the per-segment
    # Transformer outputs of the whole sequence.
    model = per_frame("transformer_lstm", dim=16, layers=1, heads=2, hidden=8)
    transformer, lstm = model.encoder.encoders
    assert model.carries_state
    torch.manual_seed(2)
    x, mask, length = torch.randn(2, 11, D), torch.ones(2, 11, dtype=torch.bool), 4
    mask[1, 9:] = False  # row 1 ends inside the last segment
    with torch.no_grad():
        pieces, state = [], None
        for start in range(0, 11, length):
            piece, state = model(x[:, start : start + length], mask[:, start : start + length], state=state,
                                 return_state=True)
            pieces.append(piece)
        carried = torch.cat(pieces, 1)
        f_h = torch.cat([transformer(x[:, s : s + length], mask[:, s : s + length]) for s in range(0, 11, length)], 1)
        whole = model.head(lstm(f_h, mask))
    torch.testing.assert_close(carried[mask], whole[mask])
    assert state[0].shape == (1, 2, 8) and state[1].shape == (1, 2, 8)  # the LSTM's (h, c), last layer


def test_early_fusion_has_the_papers_fully_connected_layer():
    # eq. 1: f^m = W_f [f^v; f^a] + b_f, then the temporal encoder
    model = create_model("fusion", input_dim=D, output_dim=K, modality_dims=[8, 4], fusion="early",
                         encoder="transformer", fusion_dim=16, dim=16, heads=2, per_frame=True).eval()
    assert isinstance(model.fuse, torch.nn.Linear)
    assert (model.fuse.in_features, model.fuse.out_features) == (8 + 4, 16)
    assert model.fuse.weight.shape == (16, 12) and model.fuse.bias.shape == (16,)
    assert {"fuse.weight", "fuse.bias"} <= set(model.state_dict())
    # fusion_dim equal to the Transformer's dim: the FC is the Transformer's input affine (no second projection)
    assert isinstance(model.model.encoder.encoders[0].project, torch.nn.Identity)
    x, mask = torch.randn(2, 5, D), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        affine = x @ model.fuse.weight.T + model.fuse.bias  # no activation after the layer
        torch.testing.assert_close(model(x, mask), model.model(affine, mask))
    assert not model.carries_state  # a Transformer carries nothing
    with pytest.raises(ValueError, match="LSTM/GRU"):
        model(x, mask, state=torch.zeros(1, 2, 16))


def test_only_early_fusion_into_a_recurrent_encoder_carries_state():
    late = create_model("fusion", input_dim=D, output_dim=K, modality_dims=[8, 4], fusion="late_encoders",
                        encoder="gru@2", per_frame=True).eval()
    assert not late.carries_state
    x, mask = torch.randn(2, 5, D), torch.ones(2, 5, dtype=torch.bool)
    y, state = late(x, mask, return_state=True)
    assert state is None and torch.equal(y, late(x, mask))
    with pytest.raises(ValueError, match="early fusion"):
        late(x, mask, state=torch.zeros(1, 2, 128))
    early = create_model("fusion", input_dim=D, output_dim=K, modality_dims=[8, 4], fusion="early",
                         encoder="transformer_lstm", fusion_dim=16, dim=16, heads=2, hidden=8, per_frame=True)
    assert early.carries_state and early.fuse.out_features == 16
