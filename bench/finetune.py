"""Fine-tuning step throughput: the training loop on lazy face crops (or audio) against the model alone.

Builds, in a temporary directory, a faces shard of real crops (the talker of
resources/demo/movie-hello.mp4, boxes jittered so that no two crops are alike, every 12th frame
invalid as where a detector missed; ``--stored-size`` px JPEG, the faces stage's 112 by default)
and trains on it, as a fine-tuning run does, recipe ``yu2023_eri_visual`` (001's visual branch:
the ``finetune`` model, encoder ``resnet18_spatial`` = ResNet18 stem + layer1-3, a spatial
Transformer of 4 blocks at dim 256 and attention pooling per frame, under the ``tcn_transformer``
temporal model, TCN 5 x 128 + Transformer 2 x 128, attention pooling, sigmoid; MSE, Adam), task
``eri`` (7 outputs), randomly initialised (the AffectNet weights cost the same to run). Each clip is
a :class:`~affectflow.training.clip_inputs.CropClip` of ``--frames`` frames sampled uniformly over
its valid ones (``crop_clips``). Measured in one process, torch on ``--threads`` threads:

- ``clips_per_s`` / ``frames_per_s``: one training epoch through the real path,
  ``affectflow.training.loop._train_epoch`` (as ``fit`` runs it): the run's batches, the crops read
  and decoded by ``--workers`` DataLoader workers (``finetune.workers``, forked at the start of the
  epoch) while the model trains on the batch before, collated, ``Trainer.train_batch`` (forward,
  loss, backward, optimiser step) and the run's schedule; the workers' start and the first batch's
  read, which nothing overlaps, are in it;
- ``limit_clips_per_s``: the same trainer (the very model and optimiser, one instance for both
  measurements, so that no difference in where two models lie in memory enters) on the same
  batches (those of the real path's first measured epoch) read beforehand and collated into
  tensors: forward, loss, backward and optimiser step only (``Trainer._forward``, ``loss_fn``,
  ``_step``, as ``train_batch`` calls them);
- ``ratio`` = clips_per_s / limit_clips_per_s. Target: >= 0.85 (data loading is not the bottleneck).

Each is warmed up first (one batch: allocator, oneDNN primitives, a first fork of the workers),
then the two run interleaved ``--repeats`` times, alternating which goes first; the best pass of
each counts (a busy machine slows both alike), ``ratio_of_medians`` and every pass are printed too.

Peak memory, over one real-path epoch of two batches run after the warm-up and apart from the
timed ones (the sampler below costs a little CPU): ``peak_rss_mb`` is the process's peak resident set
(VmHWM of /proc/self/status, reset through /proc/self/clear_refs first, so that earlier phases do
not count; ``ru_maxrss_mb`` is the whole run's). The workers are forked processes that share the
trainer's pages until either writes one (copy-on-write): ``peak_pss_total_mb`` is the largest
proportional set size of the process and its workers together (each shared page counted once over
them: the physical memory they hold), ``workers_pss_mb`` the workers' part of it, sampled every
0.25 s from /proc/<pid>/smaps_rollup. On CUDA ``cuda_peak_allocated_mb`` gives
``torch.cuda.max_memory_allocated`` of that epoch, and the steps run as a run's do there (bf16
autocast). ``epoch_overhead_s`` is the best real epoch's seconds less the best in-memory pass's.

``--audio`` adds the audio case (``audio`` in the JSON object; ``--audio-only``: that case alone):
recipe ``hallmen2024_emi_finetune`` (002: the ``wav2vec2_vad`` encoder, loaded from a
``save_pretrained`` directory as a run's ``weights_dir``, under ``audio_lstm_mean``, a 2-layer LSTM
as wide as its 1027-d input; MSE, AdamW, cosine schedule), task ``emi``, on a random audEERING
``EmotionModel`` of the real model's shape (7-layer 512-channel conv feature encoder, hidden 1024,
16 heads, FFN 4096, stable layer norm) but ``--audio-layers`` Transformer layers instead of 12,
layer drop off (both measurements then run the same layers); clips of the demo's 16 kHz int16 audio
in a media shard, cut to ``--window-s`` seconds (``audio_clips``; the recipe's 12 s at full
cost: ``--window-s 12``). The same figures, measured in a process of its own. The JSON object is
the crops case's (the audio case's with ``--audio-only``) with ``audio`` nested;
``all_cases_meet_target`` covers both.

``--workers`` defaults to the recipe's ``finetune.workers`` (neither recipe sets it: 0, the crops
read in the training process, as a user's run does). Workers are forked anew every epoch (by
``_train_epoch``), and the first step after each fork pays for copying the pages the trainer writes:
a cost per epoch, not per batch, so ``--clips`` (the epoch's length) matters with workers; see
docs/benchmarks.md for the figures on 2 CPU cores. torch runs on ``--threads`` threads (default: the
CPU count, as a train job gets its rule's cpus).

    python bench/finetune.py [--clips 8] [--frames 32] [--batch-size 4] [--workers N] [--threads N]
                             [--repeats 3] [--stored-size 112] [--audio | --audio-only] [--quick]
                             # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectflow.faces.crop import encode_jpeg, square_crop  # noqa: E402
from affectflow.h5store import ShardWriter  # noqa: E402
from affectflow.runtime.device import pick_device  # noqa: E402
from affectflow.runtime.ffmpeg import ffmpeg_exe  # noqa: E402
from affectflow.tasks import task_spec  # noqa: E402
from affectflow.training.clip_inputs import audio_clips, close_handles, crop_clips  # noqa: E402
from affectflow.training.loop import Trainer, _train_epoch, collate  # noqa: E402
from affectflow.training.recipes import recipe  # noqa: E402
from affectflow.training.schedules import Schedule  # noqa: E402
from affectflow.training.sequences import Example  # noqa: E402
from affectflow.training.settings import TrainSettings, settings_from_run  # noqa: E402

TARGET = 0.85
MB = 2**20
DEMO = REPO / "resources" / "demo" / "movie-hello.mp4"
# The talker's face in movie-hello.mp4 (1280 x 720, as bench/features.py), and the region ffmpeg
# cuts around it (x, y, w, h): every jittered square crop lies inside, and the decoded frames stay small.
TALKER_FACE = np.array([116 + 66, 85 + 38, 116 + 138, 85 + 125])
REGION = (130, 76, 180, 180)
FPS = 30
INVALID_EVERY = 12  # every 12th stored frame has no face (an empty crop, valid False)
SAMPLE_RATE = 16000
# The recipes the two cases train (affectflow.training.recipes): 001's visual branch and 002's audio model.
VISUAL_RECIPE, AUDIO_RECIPE = "yu2023_eri_visual", "hallmen2024_emi_finetune"
# audEERING's wav2vec2-large-robust-12-ft-emotion-msp-dim, but for its Transformer depth (--audio-layers)
WAV2VEC2_SHAPE = {"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096,
                  "conv_dim": (512,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2),
                  "conv_bias": True, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
                  "feat_extract_norm": "layer", "do_stable_layer_norm": True, "num_labels": 3, "vocab_size": 32,
                  "layerdrop": 0.0}
QUICK_WAV2VEC2 = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "conv_dim": (8,) * 7,
                  "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}


# ---------------------------------------------------------------- data

def demo_region(n_frames: int) -> np.ndarray:
    """The first ``n_frames`` frames (looped) of the demo video at 30 fps, cut to :data:`REGION`, RGB."""
    x, y, w, h = REGION
    out = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(DEMO), "-r", str(FPS),
         "-vf", f"crop={w}:{h}:{x}:{y}", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        check=True, capture_output=True, timeout=300,
    ).stdout
    frames = np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)
    return frames[np.arange(n_frames) % len(frames)]


def make_faces_shard(path: Path, clips: int, frames_per_clip: int, stored_size: int, seed: int = 0) -> None:
    """A faces shard of ``clips`` clips of ``frames_per_clip`` stored frames: JPEG crops of the
    talker (``stored_size`` px, boxes jittered), every :data:`INVALID_EVERY`-th frame invalid."""
    rng = np.random.default_rng(seed)
    frames = demo_region(clips * frames_per_clip)
    face = TALKER_FACE - np.array([REGION[0], REGION[1], REGION[0], REGION[1]])
    with ShardWriter(path, file_attrs={"stage": "faces", "fps": FPS, "crop_size": stored_size}) as writer:
        for c in range(clips):
            valid = np.arange(frames_per_clip) % INVALID_EVERY != INVALID_EVERY - 1
            crops = []
            for t in range(frames_per_clip):
                if not valid[t]:
                    crops.append(b"")
                    continue
                jitter = rng.integers(-8, 9, 2)
                box = face + np.array([jitter[0], jitter[1], jitter[0], jitter[1]])
                crops.append(encode_jpeg(square_crop(frames[c * frames_per_clip + t], box, size=stored_size)))
            writer.add_clip(c, {"crops": crops, "valid": valid, "timestamps": np.arange(frames_per_clip) / FPS},
                            {"qc_status": "ok"})


def demo_audio() -> np.ndarray:
    """The demo video's audio, 16 kHz mono int16."""
    out = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(DEMO), "-vn", "-ac", "1",
         "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:"],
        check=True, capture_output=True, timeout=300,
    ).stdout
    return np.frombuffer(out, np.int16)


def make_media_shard(path: Path, clips: int, seconds: float) -> None:
    """A 16 kHz media shard of ``clips`` clips of ``seconds`` s of the demo's audio, each from its own offset."""
    audio = demo_audio()
    n = int(round(seconds * SAMPLE_RATE))
    with ShardWriter(path, file_attrs={"stage": "media", "sample_rate": SAMPLE_RATE}) as writer:
        for c in range(clips):
            start = c * SAMPLE_RATE // 2
            writer.add_clip(c, {"audio": audio[(start + np.arange(n)) % len(audio)]})


def labelled(inputs: dict, task: str, seed: int = 0) -> list[Example]:
    """An :class:`Example` per lazy input, in clip order, with random clip labels in [0, 1]."""
    rng = np.random.default_rng(seed)
    k = len(task_spec(task).targets)
    return [Example.make(inputs[c], rng.uniform(0, 1, k), task=task) for c in sorted(inputs)]


def tiny_real_shape_vad(directory: Path, layers: int, quick: bool = False) -> Path:
    """A random audEERING EmotionModel of the real model's shape but ``layers`` Transformer layers
    (``quick``: narrow too, as the tests' tiny model), saved with ``save_pretrained`` into ``directory``."""
    from transformers import Wav2Vec2Config

    from affectflow.features.backbones.speech import emotion_model_class

    torch.manual_seed(0)
    config = Wav2Vec2Config(num_hidden_layers=layers, **{**WAV2VEC2_SHAPE, **(QUICK_WAV2VEC2 if quick else {})})
    emotion_model_class()(config).save_pretrained(directory)
    return directory


# ---------------------------------------------------------------- memory

def vm_status() -> dict[str, int]:
    """VmRSS and VmHWM (bytes) of this process."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: 5 > /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def pss_bytes(pid: int | str) -> int:
    """The proportional set size of process ``pid`` (its own pages, and its share of those it shares;
    summed over processes: the physical memory they hold), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:")), 0)
    except OSError:
        return 0


def children() -> list[int]:
    """This process's child processes (the DataLoader workers while an epoch reads)."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


class PssSampler(threading.Thread):
    """The largest PSS of this process and its children together (and the children's part at that
    sample), sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.workers = interval, 0, 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        workers = sum(pss_bytes(pid) for pid in children())
        total = pss_bytes("self") + workers
        if total > self.peak:
            self.peak, self.workers = total, workers

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> tuple[int, int]:
        self._stop_event.set()
        self.join()
        self.sample()  # at least this process (an epoch shorter than the interval has no sample of the workers)
        return self.peak, self.workers


# ---------------------------------------------------------------- measurements

def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def real_epoch(trainer: Trainer, schedule: Schedule, units: list[Example], epoch: int) -> float:
    """Seconds of one ``_train_epoch`` over ``units`` (the loop's own path: workers, collate, steps)."""
    history = {"padding_fraction": []}
    sync(trainer.device)
    started = time.perf_counter()
    _train_epoch(trainer, units, schedule, epoch, history)
    sync(trainer.device)
    return time.perf_counter() - started


def in_memory(units: list[Example], batches: list[list[int]], device: str, per_frame: bool) -> tuple[list, float]:
    """Each batch read (in this process) and collated onto ``device``; the seconds the reading took."""
    out, read_s = [], 0.0
    for batch in batches:
        started = time.perf_counter()
        examples = [Example(units[i].x.read(), units[i].y, units[i].valid) for i in batch]
        read_s += time.perf_counter() - started
        out.append(collate(examples, device, per_frame))
    close_handles()
    return out, read_s


def limit_pass(trainer: Trainer, tensors: list) -> float:
    """Seconds of forward, loss, backward and optimiser step over batches already in memory, as
    ``Trainer.train_batch`` runs them."""
    trainer.train_mode()
    sync(trainer.device)
    started = time.perf_counter()
    for b, (x, mask, y, valid) in enumerate(tensors):
        pred, _ = trainer._forward(x, mask)
        loss = trainer.loss_fn(pred.float(), y, valid)
        trainer._step(loss, f"limit batch {b}")
        loss.item()  # as train_batch: the loss leaves the device every batch
    trainer.flush()
    sync(trainer.device)
    return time.perf_counter() - started


def cuda_peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def cuda_peak_mb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / MB, 1) if device.startswith("cuda") else None


def measure(settings: TrainSettings, units: list[Example], *, output_dim: int, steps_per_clip: int, device: str,
            repeats: int) -> dict:
    """The real path against the limit (see the module docstring); throughputs, ratio, memory."""
    workers = settings.finetune_spec().workers
    trainer = Trainer(settings, input_dim=0, output_dim=output_dim, device=device)
    rss_model = vm_status()["VmRSS"]
    s = settings  # the run's schedule, as fit builds it (a per-batch one steps in the real path)
    schedule = Schedule(s.scheduler, trainer.optimizer, epochs=s.epochs,
                        steps_per_epoch=math.ceil(len(units) / s.batch_size), **dict(s.scheduler_params))

    real_epoch(trainer, schedule, units[: s.batch_size], epoch=-1)  # warm-up: one batch (and a first fork)
    # memory: a real-path epoch of two batches (the workers have forked before the first) apart from the
    # timed ones (the sampler's reads cost a little CPU)
    has_reset = reset_peak()
    cuda_peak_reset(device)
    sampler = PssSampler()
    sampler.start()
    real_epoch(trainer, schedule, units[: 2 * s.batch_size], epoch=-1)
    peak_rss, cuda_peak = vm_status()["VmHWM"], cuda_peak_mb(device)
    pss_peak, pss_workers = sampler.stop()

    drawn = trainer.generator.get_state()
    batches = trainer.batches(units)  # the batches of the next (first measured) real-path epoch
    trainer.generator.set_state(drawn)
    tensors, read_s = in_memory(units, batches, device, trainer.per_frame)
    limit_pass(trainer, tensors[:1])  # warm-up: one batch
    real_s, limit_s = [], []
    for r in range(repeats):  # interleaved, alternating which goes first
        for which in (("real", "limit") if r % 2 == 0 else ("limit", "real")):
            if which == "real":
                real_s.append(real_epoch(trainer, schedule, units, epoch=r))
            else:
                limit_s.append(limit_pass(trainer, tensors))

    n_clips = len(units)
    clips_per_s, limit_clips_per_s = n_clips / min(real_s), n_clips / min(limit_s)
    return {
        "clips": n_clips, "steps_per_clip": steps_per_clip, "batch_size": s.batch_size, "batches": len(batches),
        "workers": workers,
        "clips_per_s": round(clips_per_s, 3), "frames_per_s": round(clips_per_s * steps_per_clip, 2),
        "limit_clips_per_s": round(limit_clips_per_s, 3),
        "limit_frames_per_s": round(limit_clips_per_s * steps_per_clip, 2),
        "ratio": round(clips_per_s / limit_clips_per_s, 3),
        "ratio_of_medians": round(statistics.median(limit_s) / statistics.median(real_s), 3),
        "epoch_s": [round(t, 2) for t in real_s], "limit_s": [round(t, 2) for t in limit_s],
        "epoch_overhead_s": round(min(real_s) - min(limit_s), 2),
        "read_ms_per_clip_inline": round(1000 * read_s / n_clips, 2),
        "rss_after_model_mb": round(rss_model / MB, 1),
        "peak_rss_mb": round(peak_rss / MB, 1) if has_reset else None,
        "peak_pss_total_mb": round(pss_peak / MB, 1), "workers_pss_mb": round(pss_workers / MB, 1),
        "cuda_peak_allocated_mb": cuda_peak,
    }


# ---------------------------------------------------------------- the two cases

def finetune_block(name: str, args, **values) -> dict:
    """Recipe ``name``'s ``finetune`` block with ``values``, and ``--workers`` when given (else the recipe's)."""
    block = {**recipe(name)["finetune"], **values}
    if args.workers is not None:
        block["workers"] = args.workers
    return block


def visual_case(tmp: Path, args, device: str) -> dict:
    path = tmp / "faces" / "shard-0.h5"
    path.parent.mkdir()
    started = time.perf_counter()
    make_faces_shard(path, args.clips, args.stored_frames, args.stored_size)
    shard_s = time.perf_counter() - started
    units = labelled(crop_clips([path], range(args.clips), frames=args.frames, size=args.size), "eri")
    if len(units) != args.clips or any(len(u.x) != args.frames for u in units):
        raise SystemExit(f"--stored-frames {args.stored_frames} leaves fewer than --frames {args.frames} valid frames")
    settings = settings_from_run({
        "recipe": VISUAL_RECIPE, "task": "eri", "epochs": 1, "batch_size": args.batch_size,
        "model_params": {"encoder_params": {"image_size": args.size}},
        "finetune": finetune_block(VISUAL_RECIPE, args, frames=args.frames, size=args.size)})
    result = measure(settings, units, output_dim=len(task_spec("eri").targets), steps_per_clip=args.frames,
                     device=device, repeats=args.repeats)
    return {"case": "crops", "encoder": "resnet18_spatial", "temporal": "tcn_transformer", "size": args.size,
            "stored_size": args.stored_size, "stored_frames": args.stored_frames, "shard_mb":
            round(path.stat().st_size / MB, 2), "shard_build_s": round(shard_s, 1), **result}


def audio_case(tmp: Path, args, device: str) -> dict:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's and from_pretrained's bars on stderr
    path = tmp / "media" / "shard-0.h5"
    path.parent.mkdir()
    make_media_shard(path, args.audio_clips, args.window_s * 1.5)  # longer clips, cut to the window
    units = labelled(audio_clips([path], range(args.audio_clips), window_s=args.window_s), "emi")
    weights = tiny_real_shape_vad(tmp / "vad", args.audio_layers, quick=args.quick)
    settings = settings_from_run({
        "recipe": AUDIO_RECIPE, "task": "emi", "epochs": 1, "batch_size": args.audio_batch_size,
        "model_params": {"encoder_params": {"weights_dir": str(weights)}},
        "finetune": finetune_block(AUDIO_RECIPE, args, window_s=args.window_s)})
    samples = int(round(args.window_s * SAMPLE_RATE))
    result = measure(settings, units, output_dim=len(task_spec("emi").targets), steps_per_clip=samples,
                     device=device, repeats=args.repeats)
    result["samples_per_s"] = result.pop("frames_per_s")
    result["limit_samples_per_s"] = result.pop("limit_frames_per_s")
    return {"case": "audio", "encoder": "wav2vec2_vad", "temporal": "audio_lstm_mean",
            "transformer_layers": args.audio_layers, "window_s": args.window_s, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="clips of the faces shard (one epoch)")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per clip (finetune.frames)")
    parser.add_argument("--stored-frames", type=int, default=48, help="frames stored per clip")
    parser.add_argument("--size", type=int, default=112, help="side the encoder reads (finetune.size)")
    parser.add_argument("--stored-size", type=int, default=112, help="side of the stored crops (faces.crop_size)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (finetune.workers; default: the recipe's, else 0)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (a train job: its cpus)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each measurement; the best counts")
    parser.add_argument("--audio", action="store_true", help="also the audio case (Wav2Vec2 VAD encoder)")
    parser.add_argument("--audio-only", action="store_true", help="the audio case alone")
    parser.add_argument("--audio-clips", type=int, default=4)
    parser.add_argument("--audio-batch-size", type=int, default=2)
    parser.add_argument("--audio-layers", type=int, default=2, help="Transformer layers of the VAD model (real: 12)")
    parser.add_argument("--window-s", type=float, default=4.0, help="seconds of audio per clip (recipe: 12)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (tiny sizes, 1 repeat)")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.frames, args.stored_frames, args.size, args.stored_size = 4, 4, 6, 32, 32
        args.batch_size, args.repeats = 2, 1
        args.audio_clips, args.audio_batch_size, args.audio_layers, args.window_s = 2, 1, 1, 0.5
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cases = {}
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        tmp = Path(tmp)
        if not args.audio_only:
            cases["crops"] = visual_case(tmp, args, device)
            print(json.dumps(cases["crops"]), file=sys.stderr)
        if args.audio_only:
            cases["audio"] = audio_case(tmp, args, device)
            print(json.dumps(cases["audio"]), file=sys.stderr)
    if args.audio and not args.audio_only:
        # in a process of its own: its memory figures would otherwise include what the crops case left
        argv = [a for a in sys.argv[1:] if a != "--audio"]
        child = subprocess.run([sys.executable, __file__, *argv, "--audio-only"], stdout=subprocess.PIPE, text=True)
        if child.returncode != 0:
            raise SystemExit(f"the audio case failed (exit {child.returncode}); see its stderr above")
        cases["audio"] = json.loads(child.stdout.strip().splitlines()[-1])["audio"]
    main_case = cases.get("crops") or cases["audio"]
    result = {
        "bench": "finetune", "device": device, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, **main_case, "audio": cases.get("audio"), "target_ratio": TARGET,
        "all_cases_meet_target": all(c["ratio"] >= TARGET for c in cases.values()),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
