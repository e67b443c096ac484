"""The IResNet (arcface_torch) backbone: its output against a functional forward written here from
the state_dict, through a faces shard, the loading rules (wrappers, strictness, the file named
in errors), determinism, and the parameter count of IResNet100 against the layer formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from affectflow.faces.crop import decode_jpeg, encode_jpeg
from affectflow.features import create_backbone
from affectflow.features import testing as tiny
from affectflow.features.backbones.iresnet import build_iresnet
from affectflow.features.stage import build_feature_shard
from affectflow.features.weights import load_manifest
from affectflow.h5store import ShardWriter, iter_clips, read_file_attrs

LAYERS_18 = (2, 2, 2, 2)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny.iresnet_checkpoint(tmp_path_factory.mktemp("iresnet") / "r18.pt", depth=18)


def random_crops(n: int, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def reference_embedding(state: dict, images: np.ndarray, layers=LAYERS_18) -> np.ndarray:
    """IResNet written as plain functional ops on the state_dict: arcface_torch's normalisation,
    stem, pre-BN blocks with the stride on the second conv, and the BN -> fc -> BN head."""
    x = torch.from_numpy(((images / 255.0 - 0.5) / 0.5).astype(np.float32)).permute(0, 3, 1, 2).contiguous()

    def bn(t, p):
        return F.batch_norm(t, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], training=False, eps=1e-5)

    with torch.no_grad():
        x = F.prelu(bn(F.conv2d(x, state["conv1.weight"], padding=1), "bn1"), state["prelu.weight"])
        for stage, blocks in enumerate(layers, start=1):
            for j in range(blocks):
                p = f"layer{stage}.{j}"
                stride = 2 if j == 0 else 1
                out = F.conv2d(bn(x, f"{p}.bn1"), state[f"{p}.conv1.weight"], padding=1)
                out = F.prelu(bn(out, f"{p}.bn2"), state[f"{p}.prelu.weight"])
                out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn3")
                if f"{p}.downsample.0.weight" in state:
                    x = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
                x = out + x
        assert x.shape[1:] == (512, 7, 7)
        x = F.linear(bn(x, "bn2").flatten(1), state["fc.weight"], state["fc.bias"])
        return bn(x, "features").numpy()


def test_embedding_matches_a_functional_forward(ckpt):
    images = random_crops(3)
    backbone = create_backbone("iresnet100_512", weights=str(ckpt), depth=18)
    features = backbone.embed(images)
    expected = reference_embedding(torch.load(ckpt, weights_only=True), images)
    assert features.shape == (3, 512) and features.dtype == np.float32
    assert np.abs(expected).mean() > 1e-2  # not a degenerate all-zero comparison
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    assert backbone.dim == 512
    # it records what it takes (the workflow rebuilds it from them); size and normalisation are arcface_torch's
    assert backbone.params == {"weights": str(ckpt), "depth": 18, "max_frames": 0}
    assert (backbone._input_size, backbone._mean, backbone._std) == (112, [0.5] * 3, [0.5] * 3)


def test_faces_shard_gives_one_embedding_per_valid_frame(ckpt, tmp_path):
    rng = np.random.default_rng(1)
    valid = np.array([True, False, True, True, False, True, True])
    crops = [encode_jpeg(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) if v else b"" for v in valid]
    times = np.arange(len(valid)) / 30.0
    faces = tmp_path / "faces.h5"
    with ShardWriter(faces, file_attrs={"stage": "faces", "fps": 30}) as writer:
        writer.add_clip("1", {"crops": crops, "valid": valid, "timestamps": times}, {"qc_status": "ok"})
        writer.add_clip("2", {"crops": [b""] * 3, "valid": np.zeros(3, bool), "timestamps": times[:3]},
                        {"qc_status": "no_face"})
    params = {"weights": str(ckpt), "depth": 18}
    out = tmp_path / "iresnet.h5"
    assert build_feature_shard("iresnet100_512", params, faces, out, num_workers=0, batch_size=2) == 2
    assert read_file_attrs(out)["dim"] == 512
    clips = {cid: arrays for cid, arrays, _ in iter_clips(out)}
    features = clips["1"]["features"]
    assert features.shape == (valid.sum(), 512)
    np.testing.assert_allclose(clips["1"]["timestamps"], times[valid])
    decoded = np.stack([decode_jpeg(c) for c in np.asarray(crops, object)[valid]])
    expected = reference_embedding(torch.load(ckpt, weights_only=True), decoded)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    assert clips["2"]["features"].shape == (0, 512)


def test_extract_respects_max_frames(ckpt):
    crops = [encode_jpeg(image) for image in random_crops(5, seed=3)]
    backbone = create_backbone("iresnet100_512", weights=str(ckpt), depth=18, max_frames=2)
    features, times = backbone.extract(crops, np.ones(5, bool), np.arange(5) / 30.0)
    assert features.shape == (2, 512)
    np.testing.assert_allclose(times, [0, 4 / 30.0])


def test_same_input_same_output(ckpt):
    images = random_crops(2, seed=5)
    a = create_backbone("iresnet100_512", weights=str(ckpt), depth=18)
    b = create_backbone("iresnet100_512", weights=str(ckpt), depth=18)
    first = a.embed(images)
    np.testing.assert_array_equal(first, a.embed(images))
    np.testing.assert_array_equal(first, b.embed(images))
    assert a.provenance() == b.provenance()
    # different faces give different embeddings
    assert np.abs(first - a.embed(random_crops(2, seed=6))).max() > 1e-3


def test_wrapped_dataparallel_checkpoint_loads_the_same(ckpt, tmp_path):
    wrapped = tiny.iresnet_checkpoint(tmp_path / "wrapped.pt", depth=18, wrap=True)  # same seed: same weights
    images = random_crops(2)
    a = create_backbone("iresnet100_512", weights=str(ckpt), depth=18).embed(images)
    b = create_backbone("iresnet100_512", weights=str(wrapped), depth=18).embed(images)
    np.testing.assert_array_equal(a, b)
    # checkpoints saved without BatchNorm's num_batches_tracked (older torch) load too
    state = {k: v for k, v in torch.load(ckpt, weights_only=True).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "no_counters.pt")
    c = create_backbone("iresnet100_512", weights=str(tmp_path / "no_counters.pt"), depth=18).embed(images)
    np.testing.assert_array_equal(a, c)


def test_wrong_checkpoints_fail_naming_the_file(ckpt, tmp_path):
    resnet = tiny.resnet18_checkpoint(tmp_path / "torchvision_resnet18.pt")
    with pytest.raises(ValueError, match="torchvision_resnet18.pt") as info:
        create_backbone("iresnet100_512", weights=str(resnet), depth=18).embed(random_crops(1))
    assert "does not fit" in str(info.value) and "conv1.weight (64, 3, 7, 7)" in str(info.value)
    # an IResNet18 checkpoint read as IResNet50: the message says which depth it is
    with pytest.raises(ValueError, match=r"r18\.pt.*does not fit.*depth=18"):
        create_backbone("iresnet100_512", weights=str(ckpt), depth=50).embed(random_crops(1))
    # strict: a checkpoint with an extra head (keys the architecture does not have) is refused
    state = torch.load(ckpt, weights_only=True)
    state["head.weight"] = torch.zeros(8, 512)
    extra = tmp_path / "with_head.pt"
    torch.save(state, extra)
    with pytest.raises(ValueError, match=r"with_head\.pt.*head\.weight"):
        create_backbone("iresnet100_512", weights=str(extra), depth=18).embed(random_crops(1))
    # a whole pickled module (not a state_dict) is refused by weights_only loading
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3)), pickled)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        create_backbone("iresnet100_512", weights=str(pickled), depth=18).embed(random_crops(1))


@pytest.mark.parametrize("depth", [0, 34, 101, True])
def test_unknown_depth_is_rejected(ckpt, depth):
    with pytest.raises(ValueError, match="depth must be one of 18, 50, 100"):
        create_backbone("iresnet100_512", weights=str(ckpt), depth=depth)


def test_input_size_is_not_a_parameter(ckpt):
    with pytest.raises(ValueError, match="input_size"):
        create_backbone("iresnet100_512", weights=str(ckpt), input_size=224)


def expected_parameter_count(layers) -> int:
    """Parameters of an IResNet from its layer formula (BN: weight + bias; PReLU: one per channel)."""
    widths = (64, 128, 256, 512)
    total = 3 * 64 * 9 + 2 * 64 + 64  # stem conv, BN, PReLU
    cin = 64
    for blocks, width in zip(layers, widths):
        for j in range(blocks):
            c_in = cin if j == 0 else width
            total += 2 * c_in + c_in * width * 9 + 2 * width + width + width * width * 9 + 2 * width
            if j == 0:
                total += c_in * width + 2 * width  # 1x1 shortcut conv + BN
        cin = width
    return total + 2 * 512 + (512 * 7 * 7 * 512 + 512) + 2 * 512  # bn2, fc, features


@pytest.mark.parametrize("depth,layers", [(18, (2, 2, 2, 2)), (50, (3, 4, 14, 3)), (100, (3, 13, 30, 3))])
def test_parameter_and_conv_counts(depth, layers):
    with torch.device("meta"):  # shapes only: no memory for IResNet100's 65M parameters
        model = build_iresnet(depth)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == expected_parameter_count(layers)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * sum(layers) + 1 + 4  # two per block, the stem, four shortcuts
    if depth == 100:
        assert 65.0e6 < n_params < 65.3e6  # the size reported for arcface_torch r100
    assert model.fc.in_features == 512 * 7 * 7 and model.fc.out_features == 512


def test_default_weights_are_a_user_supplied_manifest_entry():
    entry = load_manifest()["iresnet100_fau"]
    assert "iresnet100_512" in entry["used_by"]
    assert entry["source"].startswith("user-supplied") and entry["licence"].startswith("user-supplied")
    import inspect

    from affectflow.features import BACKBONES

    signature = inspect.signature(BACKBONES.get("iresnet100_512"))
    assert signature.parameters["weights"].default == "iresnet100_fau"
    assert signature.parameters["depth"].default == 100
