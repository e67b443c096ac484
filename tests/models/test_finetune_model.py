"""End-to-end fine-tuning: the AffectNet ResNet18 loads into 001's spatial encoder (or fails naming
the keys), FinetuneModel equals encoder-then-temporal computed apart, padding and checkpointing
change nothing, freezing stops gradients, param groups carry their learning rates, and the
Wav2Vec2 VAD encoder gives the frames its conv geometry predicts."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torchvision
from transformers import Wav2Vec2Config

from affectflow.features.backbones.speech import emotion_model_class, n_conv_frames
from affectflow.models import create_model
from affectflow.models.finetune import FinetuneModel, ResNet18SpatialEncoder, Wav2Vec2VadEncoder
from affectflow.training.freeze import freeze, keep_frozen_norms_in_eval, param_groups

K = 2
SIZE = 32  # 2 x 2 tokens after the stride-16 trunk
SPATIAL = {"image_size": SIZE, "spatial_layers": 1, "spatial_heads": 2, "dropout": 0.0}
PER_FRAME = {"dim": 16, "layers": 1, "heads": 2, "dropout": 0.0, "per_frame": True, "head_hidden": [],
             "sigmoid": False}
STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")


def frames_model(**params) -> FinetuneModel:
    torch.manual_seed(0)
    return create_model("finetune", input_dim=0, output_dim=K, encoder="resnet18_spatial", encoder_params=SPATIAL,
                        temporal="transformer", temporal_params=PER_FRAME, **params)


def clip_batch():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 3, SIZE, SIZE)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    return x, mask


# -- the AffectNet ResNet18 checkpoint ---------------------------------------------------------------


def affectnet_resnet18(path, **edits):
    """A torchvision ResNet18 with an 8-class head, saved wrapped as training scripts do."""
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None, num_classes=8)
    state = net.state_dict()
    for key, value in edits.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return net


def test_affectnet_checkpoint_loads_into_the_trunk(tmp_path, caplog):
    path = tmp_path / "affectnet.pt"
    net = affectnet_resnet18(path)
    with caplog.at_level(logging.INFO, logger="affectflow.models.finetune"):
        encoder = ResNet18SpatialEncoder(path, **SPATIAL)
    for index, stage in enumerate(STAGES):
        expected = getattr(net, stage).state_dict()
        loaded = encoder.trunk[index].state_dict()
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), stage
    n_ignored = sum(k.startswith(("fc.", "layer4.")) for k in net.state_dict())
    assert f"ignored {n_ignored} key(s)" in caplog.text
    # and a random initialisation differs from it
    assert not torch.equal(ResNet18SpatialEncoder(None, **SPATIAL).trunk[0].weight, net.conv1.weight)


def test_a_tampered_checkpoint_names_its_keys(tmp_path):
    missing = tmp_path / "missing.pt"
    affectnet_resnet18(missing, **{"layer2.0.bn1.running_mean": None})
    with pytest.raises(ValueError, match=r"missing\.pt.*1 trunk key\(s\) missing \['layer2\.0\.bn1\.running_mean'\]"):
        ResNet18SpatialEncoder(missing, **SPATIAL)

    extra = tmp_path / "extra.pt"
    affectnet_resnet18(extra, **{"head.weight": torch.zeros(2), "layer1.5.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"extra\.pt.*2 unexpected key\(s\)") as error:
        ResNet18SpatialEncoder(extra, **SPATIAL)
    assert "head.weight" in str(error.value) and "layer1.5.conv1.weight" in str(error.value)

    shape = tmp_path / "shape.pt"
    affectnet_resnet18(shape, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    differ = r"1 shape\(s\) differ: conv1\.weight \(64, 3, 3, 3\) \(expected \(64, 3, 7, 7\)\)"
    with pytest.raises(ValueError, match=r"shape\.pt.*" + differ):
        ResNet18SpatialEncoder(shape, **SPATIAL)


# -- FinetuneModel on frames -------------------------------------------------------------------------


def test_frames_path_equals_encoder_frame_by_frame_then_temporal():
    model = frames_model().eval()
    x, mask = clip_batch()
    with torch.no_grad():
        out = model(x, mask)
        features = torch.zeros(2, 4, model.encoder.out_dim)
        for b, t in mask.nonzero().tolist():
            features[b, t] = model.encoder(x[b, t][None])[0]
        expected = model.temporal(features, mask)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

        # what the padded frames hold does not change the valid outputs
        noisy = x.clone()
        noisy[~mask] = torch.randn_like(noisy[~mask]) * 10
        torch.testing.assert_close(model(noisy, mask)[mask], out[mask], atol=1e-5, rtol=1e-5)
        # and the short clip alone, unpadded, gives its valid outputs
        torch.testing.assert_close(model(x[1:, :2], mask[1:, :2])[0], out[1, :2], atol=1e-5, rtol=1e-5)
    assert model.per_frame and not model.carries_state


def test_checkpointing_gives_the_same_outputs_gradients_and_norm_statistics():
    plain = frames_model().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpointing = True
    x, mask = clip_batch()
    outputs = []
    for model in (plain, checkpointed):
        y = model(x, mask)
        (y[mask] ** 2).sum().backward()
        outputs.append(y.detach())
    torch.testing.assert_close(outputs[1], outputs[0])
    grads = dict(plain.named_parameters())
    for name, p in checkpointed.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, msg=name)
    # the recomputation in the backward pass must not update BatchNorm statistics a second time
    buffers = dict(plain.named_buffers())
    for name, b in checkpointed.named_buffers():
        torch.testing.assert_close(b, buffers[name], msg=name)
    assert checkpointed.encoder.trunk[1].num_batches_tracked.item() == 1


# -- freezing and parameter groups -------------------------------------------------------------------


def test_frozen_layers_get_no_gradient_and_keep_their_norm_statistics():
    model = frames_model()
    frozen = freeze(model, names=["encoder.trunk.0", "encoder.trunk.1"])
    assert frozen == ["encoder.trunk.0.weight", "encoder.trunk.1.weight", "encoder.trunk.1.bias"]
    model.train()
    assert keep_frozen_norms_in_eval(model) == ["encoder.trunk.1"]
    stem_norm, layer1_norm = model.encoder.trunk[1], model.encoder.trunk[4][0].bn1
    before = stem_norm.running_mean.clone()
    x, mask = clip_batch()
    (model(x, mask)[mask] ** 2).sum().backward()
    params = dict(model.named_parameters())
    for name in frozen:
        assert params[name].grad is None, name
    for name in ("encoder.trunk.4.0.conv1.weight", "encoder.trunk.6.1.bn2.weight", "encoder.spatial_positions",
                 "encoder.spatial_pool.score.weight", "temporal.head.net.1.weight"):
        assert name in params, name
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    assert not stem_norm.training and torch.equal(stem_norm.running_mean, before)
    assert layer1_norm.training and layer1_norm.num_batches_tracked.item() == 1


def test_freeze_by_depth_and_unknown_prefixes():
    model = frames_model()
    frozen = freeze(model, depth=1)  # the encoder's first child: the whole ResNet trunk
    assert frozen == [f"encoder.trunk.{n}" for n, _ in model.encoder.trunk.named_parameters()]
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)
    with pytest.raises(ValueError, match=r"'encoder\.trunk\.9'.*encoder\.trunk\.0.*encoder\.trunk\.6"):
        freeze(model, names=["encoder.trunk.9"])
    with pytest.raises(ValueError, match=r"'encodr'.*encoder, temporal"):
        freeze(model, names=["encodr"])
    with pytest.raises(ValueError, match="depth 4 out of range"):
        freeze(model, depth=4)


def test_param_groups_split_backbone_and_head_learning_rates():
    model = frames_model()
    frozen = set(freeze(model, names=["encoder.trunk"]))
    groups = param_groups(model, lr=1e-3, lr_backbone=1e-5, weight_decay=0.01)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [("backbone", 1e-5, 0.01),
                                                                          ("head", 1e-3, 0.01)]
    ids = {name: id(p) for name, p in model.named_parameters()}
    expected_backbone = {ids[n] for n in ids if n.startswith("encoder.") and n not in frozen}
    assert {id(p) for p in groups[0]["params"]} == expected_backbone
    assert {id(p) for p in groups[1]["params"]} == {ids[n] for n in ids if n.startswith("temporal.")}
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-5, 1e-3]
    # the default backbone rate is lr; a fully frozen encoder leaves no (empty) group
    assert [g["lr"] for g in param_groups(model, lr=1e-3)] == [1e-3, 1e-3]
    freeze(model, names=["encoder"])
    assert [g["name"] for g in param_groups(model, lr=1e-3, lr_backbone=1e-5)] == ["head"]


# -- Wav2Vec2 VAD encoder ----------------------------------------------------------------------------


def tiny_emotion_model():
    """A tiny random EmotionModel with the large robust model's layer norms (stable layer norm)."""
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm="layer", do_stable_layer_norm=True, vocab_size=8, num_labels=3,
                            final_dropout=0.0)
    return emotion_model_class()(config).eval()


def test_wav2vec2_vad_frames_and_padding():
    emotion = tiny_emotion_model()
    encoder = Wav2Vec2VadEncoder(model=emotion).eval()
    assert encoder.out_dim == 16 + 3
    lengths = (4000, 2500)
    torch.manual_seed(2)
    wave = torch.randn(2, lengths[0]) * 0.1
    mask = torch.arange(lengths[0])[None] < torch.tensor(lengths)[:, None]
    geometry = emotion.config.to_dict()
    expected_frames = [n_conv_frames(n, geometry) for n in lengths]
    with torch.no_grad():
        features, frame_mask = encoder(wave, mask)
        assert features.shape == (2, expected_frames[0], 19)
        assert frame_mask.sum(1).tolist() == expected_frames
        assert not features[~frame_mask].any()
        # an independent computation of the unpadded clip: per-clip standardisation, hidden states + VAD head
        y = wave[:1]
        y = (y - y.mean()) / torch.sqrt(y.var(unbiased=False) + 1e-7)
        hidden = emotion.wav2vec2(y).last_hidden_state
        torch.testing.assert_close(features[:1], torch.cat([hidden, emotion.classifier(hidden)], -1),
                                   atol=1e-4, rtol=1e-4)
        # the padded clip's frames equal those of the clip alone, whatever its padding holds
        short, _ = encoder(wave[1:, : lengths[1]], mask[1:, : lengths[1]])
        torch.testing.assert_close(features[1, : expected_frames[1]], short[0], atol=1e-4, rtol=1e-4)

        clip_level = {**PER_FRAME, "per_frame": False}  # audio fine-tuning is for clip tasks (002)
        model = create_model("finetune", input_dim=0, output_dim=K, encoder="wav2vec2_vad",
                             encoder_params={"model": emotion}, temporal="transformer", temporal_params=clip_level)
        out = model.eval()(wave, mask)
        assert out.shape == (2, K)
        torch.testing.assert_close(out, model.temporal(features, frame_mask))
    with pytest.raises(ValueError, match="a per-frame temporal model cannot follow it"):
        create_model("finetune", input_dim=0, output_dim=K, encoder="wav2vec2_vad", encoder_params={"model": emotion},
                     temporal="transformer", temporal_params=PER_FRAME)


def test_wav2vec2_vad_loads_a_local_directory(tmp_path):
    emotion = tiny_emotion_model()
    emotion.save_pretrained(tmp_path / "vad")
    encoder = Wav2Vec2VadEncoder(tmp_path / "vad")
    assert torch.equal(encoder.classifier.out_proj.weight, emotion.classifier.out_proj.weight)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Wav2Vec2VadEncoder(tmp_path / "nowhere")
