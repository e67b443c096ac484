"""Features from a fine-tuned encoder: a fine-tuning run's fold model, frozen, as a backbone.

A features entry ``{backbone: finetuned, run: <a fine-tuning run>, fold: best}`` dumps, per face
crop or per 20 ms of audio, the encoder output of that run's fold model (the ResNet18 + spatial
Transformer's 256-d frame vector, the Wav2Vec2 VAD model's 1027-d frame), so that fused runs and
ensembles downstream read a fine-tuned backbone like any other (Yu et al. 2023, 001: "we freeze
the unimodal's model parameters with the highest ρ, extract audio and video features and feed
them to the fusion module").

``fold: best`` takes the fold with the highest out-of-fold score (``metrics.json``), ``fold: k``
fold k. The workflow fills ``models`` (the run's directory, ``results/<ds>/train/<run>``) and
makes the fold files the features job's inputs, so a changed fine-tuning run re-runs its features.
Nothing is read until the first clip: the workflow builds the backbone at start, before the run
has trained.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from affectflow.features.backbones.speech import conv_geometry, n_conv_frames
from affectflow.features.base import AudioBackbone, CropBackbone, empty_features
from affectflow.features.registry import BACKBONES
from affectflow.runtime.device import pick_device
from affectflow.training.best_fold import best_fold

__all__ = ["finetuned"]

log = logging.getLogger(__name__)

#: What each fine-tuning input gives a features entry: its modality.
MODALITY_OF_INPUT = {"crops": "visual", "audio": "audio"}


class _FoldEncoder:
    """The frozen encoder of one fold of a fine-tuning run, loaded on first use."""

    device = "auto"  # the features stage sets it from the runtime options

    def __init__(self, *, run: str, fold: int | str, models: str, input: str, folds: int = 0) -> None:
        if fold != "best" and (isinstance(fold, bool) or not isinstance(fold, int) or fold < 0):
            raise ValueError(f"fold must be 'best' or a fold number >= 0, not {fold!r}")
        if not models:
            raise ValueError(f"backbone finetuned (run {run!r}): no models directory; the workflow fills it from "
                             "the run's name")
        self.params = {"run": run, "fold": fold, "models": str(models), "input": input, "folds": int(folds)}
        self._loaded = None

    def provenance(self) -> dict:
        # the fold files are the features job's inputs: their changes re-run it. No checksum: the
        # signature is computed at start, when the run may not have trained yet, and must not change
        # once it has (that would re-run the features job for nothing)
        return {"weights_sha256": "", "package_version": f"affectflow finetuned run {self.params['run']}"}

    def fold_dir(self) -> Path:
        fold = self.params["fold"]
        folds = range(self.params["folds"]) if self.params["folds"] else None  # the run's folds, no leftover
        chosen = best_fold(self.params["models"], folds) if fold == "best" else fold
        return Path(self.params["models"]) / f"fold{chosen}"

    def encoder(self):
        """(encoder module in eval mode on its device, device, the fold's settings)."""
        if self._loaded is None:
            from affectflow.training.fold_model import load_fold_model

            where = self.fold_dir()
            device = pick_device(self.device)
            model, settings, _, _, _ = load_fold_model(where / "model.pt", where / "config.json", device)
            spec = settings.finetune_spec()
            if spec is None or spec.input != self.params["input"]:
                raise ValueError(f"{where}: not a fold of a fine-tuning run on {self.params['input']} "
                                 f"(model {settings.model!r}, finetune {settings.finetune!r})")
            log.info("features from %s (fold %s of run %s)", where, where.name, self.params["run"])
            self._loaded = (model.encoder.eval(), device, spec)
        return self._loaded


class FinetunedCrops(_FoldEncoder, CropBackbone):
    """The fine-tuned frame encoder over face crops: (N, out_dim) per batch of crops."""

    def __init__(self, *, run: str, fold: int | str, models: str, folds: int = 0) -> None:
        super().__init__(run=run, fold=fold, models=models, input="crops", folds=folds)

    @property
    def dim(self) -> int:
        return int(self.encoder()[0].out_dim)

    def embed(self, images) -> np.ndarray:
        import torch

        from affectflow.training.clip_inputs import crops_tensor

        encoder, device, spec = self.encoder()
        images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        x = crops_tensor(list(images), size=spec.size).to(device)
        with torch.inference_mode():
            return encoder(x).float().cpu().numpy()


class FinetunedAudio(_FoldEncoder, AudioBackbone):
    """The fine-tuned audio encoder over a clip's 16 kHz samples: per encoder frame, in chunks."""

    def __init__(self, *, run: str, fold: int | str, models: str, folds: int = 0, chunk_s: float = 30.0) -> None:
        super().__init__(run=run, fold=fold, models=models, input="audio", folds=folds)
        self.params["chunk_s"] = float(chunk_s)

    @property
    def dim(self) -> int:
        return int(self.encoder()[0].out_dim)

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, dim) float32 per encoder frame and each frame's centre time, as the speech backbones
        time theirs; the clip normalised as a whole, then encoded ``chunk_s`` seconds at a time."""
        import torch

        if sample_rate != 16000:
            raise ValueError(f"finetuned audio expects 16 kHz audio, not {sample_rate} Hz")
        encoder, device, _ = self.encoder()
        geometry = encoder.conv
        field, stride = conv_geometry(geometry)
        if n_conv_frames(samples.size, geometry) == 0:
            return empty_features(self.dim)
        y = samples.astype(np.float32) / np.float32(32768.0)
        y = (y - y.mean()) / np.sqrt(y.var() + np.float32(1e-7))  # over the clip, as in training's window
        chunk = max(1, int(self.params["chunk_s"] * sample_rate) // stride) * stride
        rows = []
        for start in range(0, len(y), chunk):
            piece = torch.from_numpy(np.ascontiguousarray(y[start : start + chunk]))[None].to(device)
            if n_conv_frames(piece.shape[1], geometry) == 0:
                break  # a tail shorter than the receptive field
            with torch.inference_mode():
                features, mask = encoder(piece, torch.ones_like(piece, dtype=torch.bool))
            rows.append(features[0][mask[0]].float().cpu().numpy())
        features = np.concatenate(rows).astype(np.float32)
        timestamps = (np.arange(len(features)) * stride + field / 2) / sample_rate
        return features, timestamps


@BACKBONES.register("finetuned")
def finetuned(*, run: str, fold: int | str = "best", models: str = "", input: str = "crops", folds: int = 0,
              chunk_s: float = 30.0):
    """A fine-tuning run's fold encoder as a backbone: ``input`` crops (a faces shard) or audio
    (a media shard), as the run reads; ``fold`` a number or ``best``; ``models`` the run's directory
    (the workflow fills it, and ``folds``: the run's fold count, 0: every ``fold*`` directory);
    ``chunk_s`` audio seconds encoded at a time."""
    if input not in MODALITY_OF_INPUT:
        raise ValueError(f"input {input!r}; known: {', '.join(MODALITY_OF_INPUT)} (the fine-tuning run's input)")
    if input == "crops":
        return FinetunedCrops(run=run, fold=fold, models=models, folds=folds)
    return FinetunedAudio(run=run, fold=fold, models=models, folds=folds, chunk_s=chunk_s)
