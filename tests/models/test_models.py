"""Tests of the temporal model registry: shapes, parameter counts, masking, causality, recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectflow.models import MODELS, count_parameters, create_model, takes_modality_dims
from affectflow.models.blocks import TCN, AttentionPooling, modality_dropout
from affectflow.registry import UnknownNameError
from affectflow.training.recipes import RECIPES, recipe, resolve_run

MULTIMODAL = {"fusion", "dual_transformer", "cross_attention_transformer"}
FRAME_MODELS = {"spatial_attention_resnet18", "finetune"}  # read RGB frames, not feature vectors
D, K = 12, 6
# a trainable 001 visual encoder under a GRU (tests/models/test_finetune_model.py tests it in depth)
FINETUNE = {"encoder": "resnet18_spatial", "encoder_params": {"image_size": 32, "spatial_layers": 1},
            "temporal": "gru", "temporal_params": {"hidden": 8}}


def build(name, **params):
    if name in MULTIMODAL:
        params.setdefault("modality_dims", [8, 4])
    if name == "spatial_attention_resnet18":
        return create_model(name, input_dim=3, output_dim=K, image_size=32, **params)
    if name == "finetune":
        return create_model(name, input_dim=3, output_dim=K, **{**FINETUNE, **params})
    return create_model(name, input_dim=D, output_dim=K, **params)


def inputs(name, batch=3, steps=9):
    torch.manual_seed(0)
    if name in FRAME_MODELS:
        x = torch.randn(batch, steps, 3, 32, 32)
    else:
        x = torch.randn(batch, steps, D)
    mask = torch.ones(batch, steps, dtype=torch.bool)
    mask[1, 5:] = False
    return x, mask


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_maps_a_batch_to_clip_outputs_and_ignores_padding(name):
    model = build(name).eval()
    x, mask = inputs(name)
    y = model(x, mask)
    assert y.shape == (3, K)
    assert torch.isfinite(y).all()
    # garbage in the padded steps of row 1 changes nothing
    x2 = x.clone()
    x2[1, 5:] = 1000.0
    torch.testing.assert_close(model(x2, mask), y, atol=1e-5, rtol=1e-5)
    # a row alone and unpadded gives the same output as inside the padded batch
    torch.testing.assert_close(model(x[1:2, :5], mask[1:2, :5]), y[1:2], atol=1e-5, rtol=1e-5)
    assert count_parameters(model) > 0


@pytest.mark.parametrize("name", ["tcn", "transformer", "lstm", "bilstm", "gru@2", "bigru", "tcn_transformer",
                                  "transformer_lstm", "fusion", "dual_transformer", "cross_attention_transformer"])
def test_per_frame_models_give_one_output_per_step(name):
    model = build(name, per_frame=True, sigmoid=False).eval()
    x, mask = inputs(name)
    y = model(x, mask)
    assert y.shape == (3, 9, K)
    x2 = x.clone()
    x2[1, 5:] = -50.0
    torch.testing.assert_close(model(x2, mask)[1, :5], y[1, :5], atol=1e-5, rtol=1e-5)


def test_sigmoid_option_bounds_outputs():
    x, mask = inputs("tcn")
    free = build("tcn", sigmoid=False, head_hidden=[]).eval()
    with torch.no_grad():
        free.head.net[-1].bias.fill_(5.0)
    assert (free(x, mask) > 1).all()
    bounded = build("tcn", sigmoid=True).eval()
    y = bounded(x, mask)
    assert ((y > 0) & (y < 1)).all()


def conv(i, o, k):
    return i * o * k + o


def transformer_layer(d, ff):
    return 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d


def lstm_layer(i, h):
    return 4 * (h * i + h * h + 2 * h)


def test_tcn_structure_and_parameter_count():
    tcn = TCN(10, hidden=16, layers=5, kernel=3, dropout=0.0)
    assert [b.conv.dilation[0] for b in tcn.blocks] == [1, 2, 4, 8, 16]
    assert [b.conv.kernel_size[0] for b in tcn.blocks] == [3] * 5
    assert tcn.receptive_field == 1 + 2 * (1 + 2 + 4 + 8 + 16)
    expected = conv(10, 16, 3) + conv(10, 16, 1) + 4 * conv(16, 16, 3)
    assert count_parameters(tcn) == expected


def test_tcn_is_causal_with_zero_padding():
    tcn = TCN(4, hidden=8, layers=5, kernel=3).eval()
    x = torch.randn(1, 40, 4)
    mask = torch.ones(1, 40, dtype=torch.bool)
    base = tcn(x, mask)
    x2 = x.clone()
    x2[0, 20:] = torch.randn(20, 4)
    changed = tcn(x2, mask)
    torch.testing.assert_close(changed[0, :20], base[0, :20])  # the past never sees the future
    assert not torch.allclose(changed[0, 20:], base[0, 20:])
    # step 0 sees only itself and zero padding: equal to a one-step sequence
    torch.testing.assert_close(tcn(x[:, :1], mask[:, :1])[0, 0], base[0, 0])


def test_paper_000_visual_recipe_parameter_count():
    r = recipe("yu2024_emi_visual")
    model = create_model(r["model"], input_dim=546, output_dim=6, **r["model_params"])
    h = 128
    tcn = conv(546, h, 3) + conv(546, h, 1) + 4 * conv(h, h, 3)
    transformer = 2 * transformer_layer(h, 4 * h)  # 2 blocks, attention dim 128, no projection
    head = (h * 128 + 128) + (128 * 6 + 6)  # FFN Linear-ReLU-Linear
    assert count_parameters(model) == tcn + transformer + head
    assert model.encoder.encoders[1].encoder.layers[0].self_attn.num_heads == 4
    assert len(model.encoder.encoders[1].encoder.layers) == 2


def test_paper_002_audio_model_matches_the_paper():
    r = recipe("hallmen2024_emi")
    assert (r["optimizer"], r["lr"], r["epochs"], r["batch_size"], r["scheduler"]) == ("adamw", 1e-4, 30, 32, "cosine")
    model = create_model(r["model"], input_dim=1027, output_dim=6, **r["model_params"])
    lstm = lstm_layer(1027, 1027) * 2  # 2 layers, hidden = input width
    head = (2054 * 2054 + 2054) + (2054 * 6 + 6)  # Linear(2054)-tanh-Linear(6)
    assert count_parameters(model) == lstm + head
    assert model.lstm.rnn.num_layers == 2 and model.lstm.rnn.dropout == pytest.approx(0.1)
    # the test model: the same network and training, on train + val (no clip left to stop on)
    final = recipe("hallmen2024_emi_trainval")
    assert (final["fold_scheme"], r["fold_scheme"]) == ("mix", "official")
    assert {k: v for k, v in final.items() if k != "fold_scheme"} \
        == {k: v for k, v in r.items() if k not in ("fold_scheme", "monitor", "early_stopping")}
    assert isinstance(model.head.net[2], torch.nn.Tanh)
    # output = head([mean of the inputs ; LSTM output at the last valid step])
    model.eval()
    x = torch.randn(2, 7, 1027)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    h, _ = model.lstm.rnn(x[:1, :4])
    expected = model.head(torch.cat([x[0, :4].mean(0), h[0, -1]])[None])
    torch.testing.assert_close(model(x, mask)[:1], expected, atol=1e-5, rtol=1e-5)


def test_paper_003_transformer_recipe():
    r = recipe("liu2023_va_transformer")
    model = create_model(r["model"], input_dim=64, output_dim=2, **r["model_params"])
    enc = model.encoder.encoders[0]
    assert enc.out_dim == 1024 and len(enc.encoder.layers) == 4
    assert enc.encoder.layers[0].self_attn.num_heads == 4 and enc.encoder.layers[0].dropout.p == pytest.approx(0.3)
    linears = [m for m in model.head.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 256, 2]
    assert r["segment_length"] == 150 and r["loss"] == "ccc"
    y = model.eval()(torch.randn(2, 5, 64), torch.ones(2, 5, dtype=torch.bool))
    assert y.shape == (2, 5, 2)


def test_paper_001_and_004_recipes():
    r = recipe("yu2023_eri")
    assert r["model_params"]["modality_dropout"] == {"p_m": 0.9, "p_v": 0.5}
    assert (r["lr"], r["batch_size"], r["max_steps"]) == (1e-4, 64, 32)
    model = create_model(r["model"], input_dim=20, output_dim=7, modality_dims=[12, 8], **r["model_params"])
    assert isinstance(model.pool, AttentionPooling) and isinstance(model.fuse[0], torch.nn.LayerNorm)
    r = recipe("deng2023_au")
    assert (r["loss"], r["scheduler"], r["scheduler_params"], r["epochs"]) == ("bce", "step",
                                                                              {"step_size": 20, "gamma": 0.1}, 50)
    assert r["fold_scheme"] == "train5_val2"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_builds(name, tmp_path):
    r = recipe(name)
    if r["model"] == "finetune":
        if r["model_params"]["encoder"] == "wav2vec2_vad":  # the run's backbone entry gives the weights
            from affectflow.features.testing import vad_dir

            r["model_params"]["encoder_params"] = {"weights_dir": str(vad_dir(tmp_path / "vad"))}
        model = create_model("finetune", input_dim=0, output_dim=6, **r["model_params"])
        assert count_parameters(model.encoder) > 0 and count_parameters(model.temporal) > 0
        return
    if r["model"] == "spatial_attention_resnet18":
        model = create_model(r["model"], input_dim=3, output_dim=7, **r["model_params"])
        assert model.spatial.out_dim == 256 and len(model.spatial.encoder.layers) == 4
        return
    extra = {"modality_dims": [8, 8]} if r["model"] in MULTIMODAL else {}
    model = create_model(r["model"], input_dim=16, output_dim=6, **r["model_params"], **extra)
    assert count_parameters(model) > 0


def test_resolve_run_puts_the_recipe_under_the_run():
    run = resolve_run({"recipe": "yu2024_emi_visual", "lr": 0.01, "model_params": {"layers": 3}})
    assert run["lr"] == 0.01 and run["batch_size"] == 128
    assert run["model_params"]["layers"] == 3 and run["model_params"]["heads"] == 4
    with pytest.raises(KeyError, match="known: .*hallmen2024_emi"):
        resolve_run({"recipe": "nope"})


def test_modality_dropout_probabilities_and_training_only():
    g = torch.Generator().manual_seed(0)
    video, audio = torch.ones(20000, 3), torch.ones(20000, 3)
    v, a = modality_dropout([video, audio], p_m=0.9, p_v=0.5, generator=g)
    kept_v, kept_a = v[:, 0] > 0, a[:, 0] > 0
    assert (kept_v | kept_a).all()  # never both dropped
    both = (kept_v & kept_a).float().mean().item()
    only_v = (kept_v & ~kept_a).float().mean().item()
    assert both == pytest.approx(0.9, abs=0.01) and only_v == pytest.approx(0.05, abs=0.01)

    model = build("fusion", fusion="late_encoders", modality_dropout={"p_m": 0.0, "p_v": 1.0}, dropout=0.0)
    x, mask = inputs("fusion")
    model.eval()
    y = model(x, mask)
    torch.testing.assert_close(model(x, mask), y)  # no dropout in eval: deterministic, audio used
    x_no_audio = x.clone()
    x_no_audio[..., 8:] = 0
    assert not torch.allclose(model(x_no_audio, mask), y)
    model.train()
    # p_m = 0, p_v = 1: in training the audio encoding is always zeroed, so audio cannot matter
    torch.testing.assert_close(model(x, mask), model(x_no_audio, mask))


def test_late_prediction_fusion_is_the_average_of_the_branches():
    model = build("fusion", fusion="late_predictions").eval()
    x, mask = inputs("fusion")
    expected = (model.models[0](x[..., :8], mask) + model.models[1](x[..., 8:], mask)) / 2
    torch.testing.assert_close(model(x, mask), expected)


def test_bad_parameters_are_named():
    with pytest.raises(TypeError, match="bogus"):
        build("tcn", bogus=1)
    with pytest.raises(ValueError, match="modality_dims"):
        create_model("fusion", input_dim=D, output_dim=K, modality_dims=[5, 5])
    with pytest.raises(ValueError, match="pooling"):
        build("lstm", pooling="max")
    with pytest.raises(ValueError, match="divisible"):
        build("transformer", dim=10, heads=4)
    with pytest.raises(UnknownNameError, match="tcn_transformer"):
        create_model("tcn-xl", input_dim=D, output_dim=K)


def test_recurrent_state_carry_equals_one_long_pass():
    model = build("gru@2", per_frame=True, sigmoid=False).eval()
    x = torch.randn(2, 12, D)
    mask = torch.ones(2, 12, dtype=torch.bool)
    whole = model(x, mask)
    first, state = model(x[:, :5], mask[:, :5], return_state=True)
    second, _ = model(x[:, 5:], mask[:, 5:], state=state, return_state=True)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-5)
    assert model.carries_state and not build("tcn", per_frame=True).carries_state


def test_spatial_model_loads_local_resnet18_weights(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "affectnet_resnet18.pt")
    model = create_model("spatial_attention_resnet18", input_dim=3, output_dim=7, image_size=32,
                         weights_path=str(tmp_path / "affectnet_resnet18.pt"))
    torch.testing.assert_close(model.trunk[0].weight, reference.conv1.weight)
    torch.testing.assert_close(model.trunk[6][0].conv1.weight, reference.layer3[0].conv1.weight)
    assert np.prod(model.spatial_positions.shape) == 2 * 2 * 256


@pytest.mark.parametrize("name", ["transformer", "transformer_lstm", "cross_attention_transformer", "fusion"])
def test_an_all_padding_row_gives_finite_outputs(name):
    # a batch of segments can hold a row that has already ended: no NaN may come out of it
    model = build(name, per_frame=True).eval()
    assert model.per_frame
    x, mask = inputs(name)
    mask[2] = False
    assert torch.isfinite(model(x, mask)).all()


def test_multimodal_models_declare_that_they_take_modality_dims():
    multimodal = [name for name in MODELS.names() if takes_modality_dims(name)]
    assert multimodal == ["cross_attention_transformer", "dual_transformer", "fusion"]
    for name in multimodal:  # each builds from the widths of the fused backbones
        model = create_model(name, input_dim=6, output_dim=2, modality_dims=[4, 2])
        assert model(torch.zeros(1, 3, 6), torch.ones(1, 3, dtype=torch.bool)).shape == (1, 2)
    with pytest.raises(UnknownNameError):
        takes_modality_dims("nope")
