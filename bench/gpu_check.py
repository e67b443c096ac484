"""GPU path check (issue 15): every CUDA path of the pipeline in one run, one JSON line.

Runs, on the device (``--device auto``: CUDA when visible, else the CPU), each path the pipeline
takes on a GPU, with a reference computed another way, and prints one JSON line (logs go to
stderr) with one object per section and an overall ``ok``; the exit status is 1 when any check
fails:

- ``mtcnn``: batched MTCNN (``MtcnnDetector.detect_all`` on batches of demo frames, 640 px as the
  faces stage decodes them) on the device: frames/s, and every box equal to the CPU's per-frame
  detection within ``tolerance_px`` (and the same faces per frame);
- ``features``: the ResNet18 features stage (``build_feature_shard``; a random checkpoint, crops of
  the demo talker) and its forward under autocast in channels_last: frames/s, and the features
  equal to an fp32 CPU forward within ``tolerance`` (relative L2 distance per row);
- ``temporal_amp``: the training loop (``fit``) with ``amp``: a clip model (TCN + Transformer) and a
  per-frame Transformer + LSTM carrying its state over segments: samples/s, peak GPU memory,
  finite losses, bf16 autocast reaching the model, fp32 weights that moved;
- ``finetune_amp``: ``fit`` of ``model: finetune`` (ResNet18 spatial encoder + GRU on face crops)
  with ``amp``, plain and with gradient checkpointing: samples/s, peak GPU memory, as above;
- ``gpu_slots``: two processes claim a device through ``claim_gpus_for_job`` (the GPU rules' first
  call) at the same time: their ``CUDA_VISIBLE_DEVICES`` must differ (on a box with two or more
  GPUs the real device pool, each process also running on its device; otherwise two fake devices).

Without CUDA the same code runs on the CPU (the test suite runs ``--quick --device cpu``, so it
cannot rot). The library turns autocast on for CUDA only; on the CPU this script turns it on
itself (``torch.autocast("cpu", dtype=torch.bfloat16)``), in the training loop as
tests/training/test_train_amp.py does, so the same mixed-precision code runs and is checked.

    python bench/gpu_check.py [--device auto|cpu|cuda] [--quick] [--only mtcnn,features,...] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from affectflow.faces import create_detector  # noqa: E402
from affectflow.faces.crop import decode_jpeg, encode_jpeg, square_crop  # noqa: E402
from affectflow.features import create_backbone  # noqa: E402
from affectflow.features.stage import build_feature_shard, default_workers  # noqa: E402
from affectflow.features.testing import resnet18_checkpoint  # noqa: E402
from affectflow.h5store import ShardWriter, iter_clips  # noqa: E402
from affectflow.media import probe_media  # noqa: E402
from affectflow.models import create_model  # noqa: E402
from affectflow.training import loop  # noqa: E402
from affectflow.training.sequences import Example  # noqa: E402
from affectflow.training.settings import TrainSettings  # noqa: E402
from affectflow.video import iter_frame_batches  # noqa: E402

log = logging.getLogger("gpu_check")

DEMO = REPO / "resources" / "demo" / "movie-hello.mp4"
SECTIONS = ("mtcnn", "features", "temporal_amp", "finetune_amp", "gpu_slots")

# Tolerances (see docs/benchmarks.md, "GPU check").
# MTCNN boxes: the same network on other kernels (cuDNN, TF32 convolutions by default on Ampere and
# later) differs by float rounding; facenet-pytorch rounds candidate boxes to whole pixels before
# resampling them for the next stage, so a rounding flip moves the crop the O-net sees by a pixel
# and its regressed box by about as much. 2 px on faces ~30-40 px wide at 640 px: a wrong box (a
# scale or an axis swapped, another face) is off by tens of pixels.
MTCNN_TOLERANCE_PX = 2.0
# Features: bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.4%); through ResNet18's 20 layers
# (fp32 accumulation in the convolutions) the 512-d pooled features come out ~0.5% from fp32
# (relative L2 per row, measured on the CPU; fp16, the fallback, is closer). 3% leaves room for the
# GPU's kernels and still fails a broken path (wrong normalisation, a layout mix-up: ~100%).
FEATURES_TOLERANCE = 0.03
# fp32 against fp32 (the CPU stage against the CPU forward): summation order only.
FP32_TOLERANCE = 1e-4

# The faces stage's decoding and the benchmark's MTCNN settings (bench/faces.py).
MAX_SIDE = 640
FPS = 30
MTCNN = {"min_face_size": 40}
# The talker's face in movie-hello.mp4 at 1280 x 720 (bench/features.py), for frames without a detection.
TALKER_FACE = np.array([116 + 66, 85 + 38, 116 + 138, 85 + 125], np.float32)
FRAMES_PER_CLIP = 128

FULL = SimpleNamespace(mtcnn_frames=128, mtcnn_batch=32, feature_frames=1024, feature_batch=64,
                       temporal_clips=256, temporal_steps=128, temporal_dim=512, temporal_epochs=2,
                       temporal_params={}, carry_params={"dim": 128, "hidden": 128, "per_frame": True},
                       finetune_clips=64, finetune_frames=16, finetune_size=112, finetune_batch=8,
                       finetune_params={"spatial_layers": 4}, finetune_hidden=64)
QUICK = SimpleNamespace(mtcnn_frames=8, mtcnn_batch=4, feature_frames=48, feature_batch=16,
                        temporal_clips=16, temporal_steps=32, temporal_dim=64, temporal_epochs=2,
                        temporal_params={"hidden": 32, "tcn_layers": 2, "dim": 32, "heads": 2, "layers": 1},
                        carry_params={"dim": 32, "heads": 2, "layers": 1, "hidden": 16, "per_frame": True},
                        finetune_clips=8, finetune_frames=3, finetune_size=32, finetune_batch=4,
                        finetune_params={"spatial_layers": 1}, finetune_hidden=8)


# -- helpers ---------------------------------------------------------------------------------------


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def sync(device: str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize()


@contextlib.contextmanager
def gpu_peak(device: str, out: dict):
    """Record the peak GPU memory of the block in ``out["peak_gpu_mem_mb"]`` (None on the CPU)."""
    if is_cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield
    out["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if is_cuda(device) else None


def finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def demo_frames(n: int) -> np.ndarray:
    """The first ``n`` frames of the demo video at 30 fps, decoded as the faces stage does (640 px,
    the project's ffmpeg pipe), repeated from the start when the video is shorter."""
    facts = probe_media(DEMO)
    batches, got = [], 0
    for batch in iter_frame_batches(DEMO, width=facts.width, height=facts.height, fps=FPS, max_side=MAX_SIDE,
                                    batch_size=32, max_seconds=n / FPS + 0.5):
        batches.append(batch)
        got += len(batch)
    frames = np.concatenate(batches)
    return frames[np.arange(n) % len(frames)]


def relative_rows(candidate: np.ndarray, reference: np.ndarray) -> float:
    """The largest relative L2 distance of a row of ``candidate`` from the row of ``reference``."""
    norms = np.maximum(np.linalg.norm(reference, axis=1), 1e-12)
    return float(np.max(np.linalg.norm(candidate - reference, axis=1) / norms))


# -- MTCNN -----------------------------------------------------------------------------------------


def box_differences(found: list, reference: list) -> tuple[float, int]:
    """The largest coordinate difference (px) between each reference box and its nearest found box,
    and the number of frames whose face count differs."""
    worst, count_mismatch = 0.0, 0
    for faces, ref_faces in zip(found, reference, strict=True):
        if len(faces) != len(ref_faces):
            count_mismatch += 1
            continue
        for ref in ref_faces:
            worst = max(worst, min(float(np.abs(np.asarray(d.box) - np.asarray(ref.box)).max()) for d in faces))
    return worst, count_mismatch


def check_mtcnn(device: str, frames: np.ndarray, sizes, tolerance_px: float) -> tuple[dict, list]:
    """Batched MTCNN on ``device`` against per-frame MTCNN on the CPU; also returns the reference."""
    detector = create_detector("mtcnn", **MTCNN, device=device)
    cpu = create_detector("mtcnn", **MTCNN, device="cpu")
    out: dict = {"frames": len(frames), "frame_size": list(frames.shape[1:3]), "batch_size": sizes.mtcnn_batch,
                 "reference": "cpu, one frame at a time"}
    with gpu_peak(device, out):
        detector.detect_all(frames[: sizes.mtcnn_batch])  # warm-up: weights on the device, first-call costs
        sync(device)
        started = time.perf_counter()
        found = []
        for i in range(0, len(frames), sizes.mtcnn_batch):
            found.extend(detector.detect_all(frames[i : i + sizes.mtcnn_batch]))
        sync(device)
        elapsed = time.perf_counter() - started
    reference = [cpu.detect_all(frames[i : i + 1])[0] for i in range(len(frames))]
    worst, mismatched = box_differences(found, reference)
    with_face = sum(1 for faces in reference if faces)
    out.update(fps=round(len(frames) / elapsed, 2), faces=sum(len(f) for f in found), frames_with_face=with_face,
               face_count_mismatches=mismatched, max_box_diff_px=round(worst, 4), tolerance_px=tolerance_px)
    # a vacuous comparison (no face found) is no proof: the talker is in every frame of the demo
    out["ok"] = bool(mismatched == 0 and worst <= tolerance_px and with_face >= len(frames) / 2 and out["fps"] > 0)
    return out, reference


# -- features --------------------------------------------------------------------------------------


def face_crops(frames: np.ndarray, detections: list | None, n: int, seed: int = 0) -> list[bytes]:
    """``n`` 112 px JPEG crops of the talker: the detected box of each frame (else the known one),
    jittered so that no two crops are alike."""
    rng = np.random.default_rng(seed)
    scale = frames.shape[2] / 1280.0
    crops = []
    for i in range(n):
        f = i % len(frames)
        faces = detections[f] if detections else []
        box = max(faces, key=lambda d: d.area).box if faces else TALKER_FACE * scale
        jitter = rng.integers(-2, 3, 2)
        crops.append(encode_jpeg(square_crop(frames[f], np.asarray(box) + np.tile(jitter, 2), size=112)))
    return crops


def write_faces_shard(path: Path, crops: list[bytes]) -> None:
    """A faces shard of ``crops``, every frame valid, in clips of FRAMES_PER_CLIP frames."""
    with ShardWriter(path, file_attrs={"stage": "faces", "fps": FPS, "crop_size": 112}) as writer:
        for c, start in enumerate(range(0, len(crops), FRAMES_PER_CLIP)):
            blobs = crops[start : start + FRAMES_PER_CLIP]
            writer.add_clip(c, {"crops": blobs, "valid": np.ones(len(blobs), bool),
                                "timestamps": np.arange(len(blobs)) / FPS}, {"qc_status": "ok"})


def read_features(path: Path) -> np.ndarray:
    clips = sorted(iter_clips(path, ("features",)), key=lambda clip: int(clip[0]))
    return np.concatenate([arrays["features"] for _, arrays, _ in clips])


class ForwardProbe:
    """Forward hooks on a module's first convolution: the dtype it computed in, and whether its
    input was channels_last."""

    def __init__(self, module) -> None:
        conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
        self.dtypes: set[str] = set()
        self.channels_last: set[bool] = set()
        conv.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        x = args[0]
        self.dtypes.add(str(output.dtype).removeprefix("torch."))
        self.channels_last.add(bool(x.is_contiguous(memory_format=torch.channels_last)))


def cpu_autocast_embed(backbone, images: np.ndarray) -> np.ndarray:
    """``TorchImageBackbone.embed``'s forward as it runs on CUDA (channels_last, bf16 autocast), on
    the CPU: the library turns autocast on for CUDA only. The preprocessing is the backbone's."""
    module, device, mean, std = backbone.model()
    module.to(memory_format=torch.channels_last)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    size = backbone.params["input_size"]
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
    x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
        y = module(x)
    return y.float().reshape(len(y), -1).cpu().numpy()


def check_features(device: str, crops: list[bytes], sizes, scale: float, tmp: Path) -> dict:
    """The features stage and its autocast/channels_last forward on ``device`` against fp32 on the CPU
    (tolerances times ``scale``)."""
    tolerance = FEATURES_TOLERANCE * scale
    # the stage autocasts on CUDA only: there it is held to the bf16 tolerance, on the CPU to fp32's
    stage_tolerance = (FEATURES_TOLERANCE if is_cuda(device) else FP32_TOLERANCE) * scale
    name = "resnet18_pool512"
    params = {"weights": str(resnet18_checkpoint(tmp / "resnet18.pt"))}
    write_faces_shard(tmp / "faces.h5", crops)
    write_faces_shard(tmp / "warm.h5", crops[: sizes.feature_batch])
    images = np.stack([decode_jpeg(blob) for blob in crops])
    batches = [images[i : i + sizes.feature_batch] for i in range(0, len(images), sizes.feature_batch)]
    workers = default_workers()
    out: dict = {"backbone": name, "frames": len(images), "batch_size": sizes.feature_batch, "workers": workers,
                 "reference": "fp32 on the cpu (the library's forward)"}

    reference_backbone = create_backbone(name, **params)
    reference_backbone.device = "cpu"
    reference = np.concatenate([reference_backbone.embed(batch) for batch in batches])

    with gpu_peak(device, out):
        stage_args = dict(batch_size=sizes.feature_batch, num_workers=workers, device=device)
        build_feature_shard(name, params, tmp / "warm.h5", tmp / "warm_out.h5", **stage_args)  # warm-up
        started = time.perf_counter()
        build_feature_shard(name, params, tmp / "faces.h5", tmp / "features.h5", **stage_args)
        stage_s = time.perf_counter() - started
        stage = read_features(tmp / "features.h5")

        # the forward alone, on the batches already decoded: the library's on CUDA, its CPU twin here
        backbone = create_backbone(name, **params)
        backbone.device = device
        probe = ForwardProbe(backbone.model()[0])
        forward = backbone.embed if is_cuda(device) else (lambda batch: cpu_autocast_embed(backbone, batch))
        forward(batches[0])  # warm-up
        sync(device)
        started = time.perf_counter()
        candidate = np.concatenate([forward(batch) for batch in batches])
        sync(device)
        forward_s = time.perf_counter() - started

    autocast = sorted(probe.dtypes - {"float32"})
    stage_diff = relative_rows(stage, reference)
    rel_diff = relative_rows(candidate, reference)
    out.update(
        fps=round(len(images) / stage_s, 1),
        forward_fps=round(len(images) / forward_s, 1),
        autocast=autocast[0] if len(autocast) == 1 else ("off" if not autocast else "+".join(autocast)),
        channels_last=probe.channels_last == {True},
        stage_autocast=is_cuda(device),
        max_abs_diff=round(float(np.abs(candidate - reference).max()), 6),
        rel_diff=round(rel_diff, 6),
        tolerance=tolerance,
        stage_rel_diff=round(stage_diff, 6),
        stage_tolerance=stage_tolerance,
        reference_max_abs=round(float(np.abs(reference).max()), 4),
    )
    out["ok"] = bool(
        np.isfinite(candidate).all() and np.isfinite(stage).all() and stage.shape == reference.shape
        and out["autocast"] in ("bfloat16", "float16") and out["channels_last"]
        and rel_diff <= tolerance and stage_diff <= stage_tolerance and out["fps"] > 0 and out["forward_fps"] > 0
    )
    return out


# -- training with AMP -----------------------------------------------------------------------------


class AmpProbeTrainer(loop.Trainer):
    """The training loop's Trainer, recording the dtypes its linear and convolution layers compute
    in; ``force_amp`` turns its bf16 autocast on off CUDA too (as tests/training/test_train_amp.py)."""

    force_amp = False
    last: AmpProbeTrainer | None = None

    def __init__(self, settings, **kwargs) -> None:
        super().__init__(settings, **kwargs)
        if type(self).force_amp:
            self.amp = settings.amp
        self.dtypes: set[str] = set()
        layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
        for module in self.model.modules():
            if isinstance(module, layers):
                module.register_forward_hook(
                    lambda module, args, output: self.dtypes.add(str(output.dtype).removeprefix("torch.")))
        type(self).last = self


def fit_with_amp(device: str, settings: TrainSettings, examples: list, input_dim: int, output_dim: int) -> dict:
    """``fit`` with ``settings.amp`` on ``device``: samples/s, peak GPU memory, and the checks."""
    torch.manual_seed(settings.seed)
    initial = {k: v.detach().clone() for k, v in
               create_model(settings.model, input_dim=input_dim, output_dim=output_dim,
                                 **settings.model_params).state_dict().items()}
    out: dict = {"model": settings.model, "examples": len(examples), "epochs": settings.epochs,
                 "batch_size": settings.batch_size}
    AmpProbeTrainer.force_amp = not is_cuda(device)
    with gpu_peak(device, out), mock.patch.object(loop, "Trainer", AmpProbeTrainer):
        started = time.perf_counter()
        model, history = loop.fit(settings, examples, input_dim=input_dim, output_dim=output_dim, device=device)
        sync(device)
        elapsed = time.perf_counter() - started
    trainer = AmpProbeTrainer.last
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    losses = [float(v) for v in history["train_loss"]]
    autocast = sorted(trainer.dtypes - {"float32"})
    out.update(
        samples_per_s=round(len(examples) * settings.epochs / elapsed, 2),
        seconds=round(elapsed, 2),
        train_loss=[round(v, 6) for v in losses],
        finite_loss=bool(losses) and finite(*losses),
        autocast=autocast[0] if len(autocast) == 1 else ("off" if not autocast else "+".join(autocast)),
        amp_forced_on_cpu=AmpProbeTrainer.force_amp,
        weights_fp32=all(v.dtype == initial[k].dtype for k, v in state.items()),
        weights_moved=any(not torch.equal(v, initial[k]) for k, v in state.items() if v.is_floating_point()),
    )
    out["ok"] = bool(out["finite_loss"] and out["autocast"] == "bfloat16" and out["weights_fp32"]
                     and out["weights_moved"] and out["samples_per_s"] > 0)
    return out


def temporal_examples(sizes, *, per_frame: bool, seed: int) -> list[Example]:
    """Feature sequences whose targets follow from the features (so the loss has something to fit)."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(sizes.temporal_clips):
        steps = sizes.temporal_steps - (i % 4) * (sizes.temporal_steps // 8)  # lengths differ: masks, padding
        x = rng.normal(size=(steps, sizes.temporal_dim)).astype(np.float32)
        if per_frame:
            examples.append(Example.make(x, np.tanh(x[:, :2]), task="va"))
        else:
            examples.append(Example.make(x, 1 / (1 + np.exp(-x[:, :2].mean(0) * 4))))
    return examples


def check_temporal_amp(device: str, sizes) -> dict:
    """A clip model (TCN + Transformer, papers 000/001) and a per-frame Transformer + LSTM carrying
    its state over segments (paper 003), trained by ``fit`` with AMP."""
    clip = TrainSettings(model="tcn_transformer", model_params=sizes.temporal_params, epochs=sizes.temporal_epochs,
                         batch_size=8, lr=1e-3, seed=0, amp=True)
    out = fit_with_amp(device, clip, temporal_examples(sizes, per_frame=False, seed=0), sizes.temporal_dim, 2)
    segment = max(8, sizes.temporal_steps // 4)
    carry = TrainSettings(model="transformer_lstm", model_params=sizes.carry_params, task="va", loss="ccc",
                          segment_length=segment, segment_stride=segment, carry_state=True,
                          epochs=sizes.temporal_epochs, batch_size=8, lr=1e-3, seed=0, amp=True)
    out["carry_state"] = fit_with_amp(device, carry, temporal_examples(sizes, per_frame=True, seed=1),
                                      sizes.temporal_dim, 2)
    out["ok"] = bool(out["ok"] and out["carry_state"]["ok"])
    return out


def crop_examples(crops: list[bytes], sizes, seed: int = 0) -> list[Example]:
    """Clips of real face crops, resized and normalised as the encoder reads them, each labelled by
    its mean red level."""
    rng = np.random.default_rng(seed)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    examples = []
    for _ in range(sizes.finetune_clips):
        chosen = rng.choice(len(crops), sizes.finetune_frames, replace=len(crops) < sizes.finetune_frames)
        images = torch.from_numpy(np.stack([decode_jpeg(crops[i]) for i in chosen])).permute(0, 3, 1, 2).float() / 255
        images = torch.nn.functional.interpolate(images, size=(sizes.finetune_size,) * 2, mode="bilinear",
                                                 align_corners=False, antialias=True)
        examples.append(Example.make((images - mean) / std, [float(images[:, 0].mean())]))
    return examples


def check_finetune_amp(device: str, crops: list[bytes], sizes) -> dict:
    """``model: finetune`` (ResNet18 spatial encoder, paper 001, under a GRU) trained by ``fit`` with
    AMP on face crops, plain and with gradient checkpointing."""
    examples = crop_examples(crops, sizes)
    runs = {}
    for checkpointing in (False, True):
        settings = TrainSettings(
            model="finetune", finetune={"input": "crops", "frames": sizes.finetune_frames, "size": sizes.finetune_size},
            epochs=2, lr=1e-3, batch_size=sizes.finetune_batch, seed=0, batching="random", loss="mse", amp=True,
            model_params={"encoder": "resnet18_spatial", "checkpointing": checkpointing,
                          "encoder_params": {"image_size": sizes.finetune_size, **sizes.finetune_params},
                          "temporal": "gru", "temporal_params": {"hidden": sizes.finetune_hidden}})
        runs[checkpointing] = fit_with_amp(device, settings, examples, 3, 1)
    out = {**runs[False], "frames_per_clip": sizes.finetune_frames, "image_size": sizes.finetune_size,
           "checkpointing": runs[True]}
    out["ok"] = bool(runs[False]["ok"] and runs[True]["ok"])
    return out


# -- GPU slots -------------------------------------------------------------------------------------

# One GPU job: claim a device as a GPU rule's script does, run on it (real devices only), and hold
# the claim until the other job has its own (so that the two claims overlap in time).
SLOT_JOB = textwrap.dedent(
    """
    import json, os, sys, time
    from types import SimpleNamespace
    from affectflow.runtime.gpu_slots import claim_gpus_for_job
    out, other, real = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    slot = claim_gpus_for_job(SimpleNamespace(resources={"gpu": 1}))
    record = {"pid": os.getpid(), "claimed": slot.devices if slot else None,
              "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}
    if real:
        import torch
        torch.ones(1024, device="cuda").sum().item()
        props = torch.cuda.get_device_properties(0)
        record.update(device_count=torch.cuda.device_count(), name=props.name,
                      uuid=str(getattr(props, "uuid", "")), pci_bus_id=getattr(props, "pci_bus_id", None))
    with open(out + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(out + ".tmp", out)
    deadline = time.time() + 120
    while not os.path.exists(other) and time.time() < deadline:
        time.sleep(0.05)
    record["end"] = time.time()
    with open(out + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(out + ".tmp", out)
    """
)


def check_gpu_slots(device: str, tmp: Path) -> dict:
    """Two GPU jobs at once claim distinct devices through the GPU slots."""
    from affectflow.runtime.gpu_slots import device_pool

    n_cuda = torch.cuda.device_count() if is_cuda(device) else 0
    env = {k: v for k, v in os.environ.items() if k != "AFFECTFLOW_GPU_DEVICES"}
    env.update(AFFECTFLOW_GPU_LOCK_DIR=str(tmp / "locks"), PYTHONPATH=str(REPO / "src"))
    real = n_cuda >= 2 and len(device_pool(env)) >= 2
    if real:
        mode = f"{len(device_pool(env))} real devices"
    else:
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env["AFFECTFLOW_GPU_DEVICES"] = "2"
        mode = "single device: two fake devices" if n_cuda == 1 else "no GPU: two fake devices"
    paths = [tmp / "slot0.json", tmp / "slot1.json"]
    procs = [subprocess.Popen([sys.executable, "-c", SLOT_JOB, str(paths[i]), str(paths[1 - i]), "1" if real else "0"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    codes, errors = [], []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        codes.append(proc.returncode)
        if proc.returncode:
            errors.append(err[-1000:])
    records = [json.loads(p.read_text()) for p in paths if p.exists()]
    devices = [r.get("visible") for r in records]
    out: dict = {"mode": mode, "devices": devices, "exit_codes": codes}
    if real:
        out["physical"] = [r.get("uuid") or r.get("pci_bus_id") for r in records]
    overlapped = len(records) == 2 and all("end" in r for r in records) and \
        max(r["start"] for r in records) < min(r["end"] for r in records)
    out["distinct"] = len(records) == 2 and None not in devices and len(set(devices)) == 2 and \
        (not real or len(set(out["physical"])) == 2)
    out["overlapped"] = bool(overlapped)
    if errors:
        out["errors"] = errors
    out["ok"] = bool(codes == [0, 0] and out["distinct"] and overlapped)
    return out


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny frame counts and models (CI: well under a minute)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's CPU threads (default: 1 with --quick, so that a busy machine's spinning "
                             "OpenMP workers do not slow it many times over; else torch's own)")
    parser.add_argument("--tolerance-scale", type=float, default=1.0,
                        help="multiply every tolerance (0: exact equality, which the mixed-precision paths fail)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--only: unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.tolerance_scale < 0:
        parser.error("--tolerance-scale must be >= 0")
    return args


def run_section(name: str, result: dict, function, *args):
    """Run one check; an exception fails the section (recorded with its message), not the script."""
    log.info("%s ...", name)
    started = time.perf_counter()
    try:
        out = function(*args)
    except Exception as err:  # noqa: BLE001 - every failure is reported in the JSON line
        traceback.print_exc(file=sys.stderr)
        result[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:1000]}
        return None
    section = out[0] if isinstance(out, tuple) else out
    section["seconds_total"] = round(time.perf_counter() - started, 2)
    result[name] = section
    log.info("%s: ok=%s (%.1f s)", name, section["ok"], section["seconds_total"])
    return out


def main(argv=None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    sizes = QUICK if args.quick else FULL
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    result: dict = {
        "bench": "gpu_check",
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if is_cuda(device) else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "quick": args.quick,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "threads": torch.get_num_threads(),
    }
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        tmp = Path(tmp)
        wanted = set(args.sections)
        frames = detections = crops = None
        if wanted & {"mtcnn", "features", "finetune_amp"}:
            frames = demo_frames(max(sizes.mtcnn_frames, 8))
        if "mtcnn" in wanted:
            out = run_section("mtcnn", result, check_mtcnn, device, frames, sizes,
                              MTCNN_TOLERANCE_PX * args.tolerance_scale)
            detections = out[1] if out else None
        if wanted & {"features", "finetune_amp"}:
            crops = face_crops(frames, detections, max(sizes.feature_frames, sizes.finetune_frames))
        if "features" in wanted:
            run_section("features", result, check_features, device, crops, sizes,
                        args.tolerance_scale, tmp)
        if "temporal_amp" in wanted:
            run_section("temporal_amp", result, check_temporal_amp, device, sizes)
        if "finetune_amp" in wanted:
            run_section("finetune_amp", result, check_finetune_amp, device, crops, sizes)
        if "gpu_slots" in wanted:
            run_section("gpu_slots", result, check_gpu_slots, device, tmp)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["ok"] = all(result[name]["ok"] for name in args.sections)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
