"""A planted-signal fixture at the feature level: the cached features and labels a recipe trains on.

:func:`write_planted` writes, for a recipe config (a loaded ``config/recipes/*.yaml``), what the
training rule reads: the labelled manifest, the test manifest, per-frame tasks' frame label table
(from Aff-Wild2-style annotation files), and every ``features`` key's shards laid out as the
workflow writes them (``results/<ds>/features/<key>/shard-<label>.h5``). No media, faces or
backbones run: it tests that a recipe *learns*, not that it extracts.

Labels are a function of a latent: one vector per clip (EMI, ERI) or a smooth trajectory per frame
(VA, AU). Each features key carries a noisy random projection of part of it: with both modalities
configured, the visual keys carry half of a clip/VA latent and the audio keys the other half (a
fused run needs both); for AU the visual keys carry every AU's latent and the audio keys a second
view of half of them. Several keys of one modality carry the same components, each through its own
projection and noise. A face-masked key (``mask: upper|lower``, the data balancing of
Deng et al. 2023, 004) is its unmasked twin's features with the hidden AUs' latents set to
"absent", as the masked copies' labels say. ``shuffle=True`` writes the very same features with
the labels permuted across the labelled clips or tracks (all tracks have one length, so whole label
tracks move, keeping the label distribution and their smoothness): the null a recipe must beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.data import frame_label_table, write_manifest
from affectflow.data.affwild2 import track_id
from affectflow.data.folds import TRAIN_ONLY, assign_folds, make_folds
from affectflow.data.listing import shard_column
from affectflow.features.registry import BACKBONES
from affectflow.h5store import ShardWriter
from affectflow.tasks import task_spec
from affectflow.training.settings import settings_from_run

__all__ = ["PlantedFixture", "smooth_latent", "write_annotations", "write_planted"]

SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}  # about the organisers' proportions (test a little large)
CLIP_LATENT = 4  # latent size of the clip tasks and VA
FPS = 30.0
TRACK_FRAMES = 300  # every per-frame track this long (10 s), so whole label tracks can be permuted
SMOOTH_FRAMES = 12.0  # width (sd, in frames) of the Gaussian smoothing the per-frame latents get
AU_CUT = 0.5  # an AU is present where its unit-variance latent exceeds this: ~31% of frames
AU_ABSENT = -1.5  # the latent a face-masked key shows for the AUs the mask hides
INVALID_SHARE = 0.05  # frames of each track annotated with the invalid code (one block)


@dataclass(frozen=True)
class PlantedFixture:
    """Paths of a written fixture; ``shards`` / ``test_shards``: each features key's shard files."""

    task: str
    results: Path
    manifest: Path
    test_manifest: Path
    frame_labels: Path | None
    shards: dict[str, list[str]]
    test_shards: dict[str, list[str]]
    test_truth: Path  # the test clips' planted labels (key columns, targets): never shuffled

    @property
    def truth(self) -> Path:
        """What the ensemble rule scores against: the frame label table or the manifest."""
        return self.frame_labels or self.manifest

    def paths(self, keys, *, test: bool = False) -> list[str]:
        """The shard files of features ``keys`` (labelled, or the test partition's)."""
        source = self.test_shards if test else self.shards
        return [p for key in keys for p in source[key]]


def write_planted(config: dict, root: str | Path, *, shuffle: bool = False, seed: int = 0, dim: int = 12,
                  noise: float = 1.0, n_clips: int | None = None, frames: int = TRACK_FRAMES,
                  n_shards: int = 2) -> PlantedFixture:
    """Write the planted fixture of recipe ``config`` under ``root``; return its paths.

    ``n_clips``: clips (EMI, ERI; default 150) or videos (VA, AU; default 30, a third of them with a
    ``_left``/``_right`` pair of tracks, each ``frames`` long), dealt train/val/test as :data:`SPLITS`.
    ``dim``: each key's width; ``noise``: the per-step noise sd against a unit-variance signal. The same ``seed`` gives
    the same features whether or not ``shuffle`` permutes the labels. For AU, every AU has positives
    in the training part of every fold of every run's fold scheme (else ValueError).
    """
    spec = task_spec(config["dataset"]["task"])
    rng = np.random.default_rng(seed)
    root = Path(root)
    results = root / "results" / config["dataset"]["name"]
    keys = _key_layout(config["features"])
    if spec.per_frame:
        rows, latents, labels = _tracks(spec, rng, n_clips, frames, root)
    else:
        rows, latents, labels = _clips(spec, rng, n_clips, root)
    n_latent = next(iter(latents.values())).shape[-1]
    carried = _carried(spec.name, sorted({m for m, _, _ in keys.values()}), n_latent)
    shard_files = _write_features(results, keys, rows, latents, carried, spec, rng, dim, noise, n_shards)

    if shuffle:  # permute labels (clip rows or whole tracks) across the labelled clips
        # one random cycle, so that no clip keeps its own labels: a few that did would teach the model
        # the planted direction, and a correlation is blind to how weakly it was learned
        order = rng.permutation(rows.loc[rows["split"] != "test", "id"].to_numpy())
        labels = {**labels, **{int(i): labels[int(j)] for i, j in zip(order, np.roll(order, -1), strict=True)}}
    if spec.per_frame:
        rows["labels"] = write_annotations(rows, labels, spec, root)
    else:
        for j, target in enumerate(spec.targets):
            rows[target] = [labels[int(i)][j] if s != "test" else np.nan for i, s in zip(rows["id"], rows["split"])]
    # the manifest job's columns: each clip's shard, then the config's grouped folds
    rows["shard"] = shard_column(rows["id"], rows["split"], n_shards)
    manifest_rows = assign_folds(rows, config["train"]["k_folds"], seed=config["train"]["seed"])
    frame_labels = None
    manifest, test_manifest = results / "manifest.tsv", results / "test_manifest.tsv"
    results.mkdir(parents=True, exist_ok=True)
    is_test = manifest_rows["split"] == "test"
    write_manifest(manifest_rows[~is_test].reset_index(drop=True), manifest)
    write_manifest(manifest_rows[is_test].reset_index(drop=True), test_manifest)
    if spec.per_frame:
        table = frame_label_table(manifest_rows[~is_test], spec.name)
        frame_labels = results / "frame_labels.csv.gz"
        table.to_csv(frame_labels, index=False, float_format="%.6g", compression="gzip")
        if spec.binary:
            _check_au_positives(manifest_rows[~is_test], table, config, spec)
    test_truth = results / "test_truth.csv"
    if shuffle:  # the test labels along a cycle of their own: the null a shuffled run is scored against
        order = rng.permutation(rows.loc[rows["split"] == "test", "id"].to_numpy())
        labels = {**labels, **{int(i): labels[int(j)] for i, j in zip(order, np.roll(order, -1), strict=True)}}
    _test_truth(rows, labels, spec).to_csv(test_truth, index=False, float_format="%.6g")
    return PlantedFixture(spec.name, results, manifest, test_manifest, frame_labels,
                          {key: files["labelled"] for key, files in shard_files.items()},
                          {key: files["test"] for key, files in shard_files.items()}, test_truth)


def _test_truth(rows: pd.DataFrame, labels: dict, spec) -> pd.DataFrame:
    """The planted labels of the test clips (one row per clip, or per valid frame from 1), which no
    manifest holds: what a trained model's test predictions are scored against."""
    test_ids = [int(i) for i in rows.loc[rows["split"] == "test", "id"]]
    if not spec.per_frame:
        return pd.DataFrame([[i, *labels[i]] for i in test_ids], columns=["id", *spec.targets])
    parts = []
    for i in test_ids:
        y = labels[i]
        valid = ~(y == spec.invalid).any(axis=1)
        part = pd.DataFrame(y[valid], columns=list(spec.targets))
        part.insert(0, "frame", np.flatnonzero(valid) + 1)
        part.insert(0, "id", i)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _key_layout(features: dict) -> dict[str, tuple[str, str, str | None]]:
    """Each features key's (modality, the key whose projection and noise it shares, mask region).

    A key with ``mask`` shares its unmasked twin's (the entry equal to it but for ``mask``)."""
    out = {}
    for key, entry in features.items():
        entry = dict(entry or {})
        name = entry.get("backbone", key)
        if name not in BACKBONES:
            raise KeyError(f"features.{key}: unknown backbone {name!r}")
        twin = next((other for other, e in features.items() if other != key and "mask" not in (e or {})
                     and {**(e or {})} == {k: v for k, v in entry.items() if k != "mask"}), None)
        region = entry.get("mask")
        out[key] = (BACKBONES.get(name).modality, twin if region and twin else key, region if twin else None)
    return out


def _carried(task: str, modalities: list[str], n_latent: int) -> dict[str, np.ndarray]:
    """The latent components each modality's keys carry (one modality: all of them)."""
    every = np.arange(n_latent)
    if len(modalities) < 2:
        return {m: every for m in modalities}
    if task == "au":  # the face shows every AU; the voice, a second view of half of them
        return {"visual": every, "audio": every[1::2]}
    half = n_latent // 2
    return {"visual": every[:half], "audio": every[half:]}


def _clips(spec, rng, n_clips, root) -> tuple[pd.DataFrame, dict, dict]:
    """Clip rows (EMI/ERI manifest columns), a latent vector per clip, labels in [0, 1]."""
    n = n_clips or 150
    ids = 1 + rng.permutation(n * 3)[:n]  # scattered ids, as real ones
    splits = _deal(rng, n)
    mix = _mix(rng, len(spec.targets), CLIP_LATENT)
    latents, labels = {}, {}
    for i in ids:
        z = rng.normal(0, 1, CLIP_LATENT)
        latents[int(i)] = z
        labels[int(i)] = np.clip(1 / (1 + np.exp(-1.5 * mix @ z)) + rng.normal(0, 0.03, len(spec.targets)), 0, 1)
    rows = pd.DataFrame({"id": ids.astype(np.int64), "split": splits, "subject": "",
                         "media": [str(root / "raw" / f"{i:05d}.mp4") for i in ids], "name": [f"{i:05d}" for i in ids]})
    return rows, latents, labels


def _tracks(spec, rng, n_videos, frames, root) -> tuple[pd.DataFrame, dict, dict]:
    """Aff-Wild2 track rows (subject = video; every third video a ``_left``/``_right`` pair), a smooth
    latent per frame (frames, L), and per-frame labels with an invalid block."""
    n = n_videos or 30
    n_latent = len(spec.targets) if spec.binary else CLIP_LATENT
    mix = _mix(rng, len(spec.targets), n_latent)
    records, latents, labels = [], {}, {}
    for video_n, split in enumerate(_deal(rng, n)):
        video = f"{video_n + 1}-30-640x360"
        for name in ([f"{video}_left", f"{video}_right"] if video_n % 3 == 0 else [video]):
            i = track_id(name)
            z = smooth_latent(rng.normal(0, 1, (frames, n_latent)))
            latents[i] = z
            y = (z > AU_CUT).astype(np.float32) if spec.binary else np.tanh(0.9 * z @ mix.T).astype(np.float32)
            invalid = int(INVALID_SHARE * frames)
            start = int(rng.integers(0, frames - invalid))
            y[start: start + invalid] = spec.invalid
            labels[i] = y
            records.append({"id": i, "split": split, "subject": video, "media": str(root / "videos" / f"{video}.mp4"),
                            "name": name, "labels": "", "fps": FPS, "frames": frames, "crops": ""})
    return pd.DataFrame(records), latents, labels


def _mix(rng, n_targets: int, n_latent: int) -> np.ndarray:
    """Random (targets, latent) weights, each row of unit norm with half of it on each half of the
    latent: every target depends on what the visual and what the audio keys carry alike."""
    mix = rng.normal(0, 1, (n_targets, n_latent))
    for half in np.array_split(np.arange(n_latent), 2):
        mix[:, half] /= np.linalg.norm(mix[:, half], axis=1, keepdims=True) * math.sqrt(2)
    return mix


def _deal(rng, n: int) -> list[str]:
    """``n`` split names in :data:`SPLITS` proportions (at least 2 of each), shuffled."""
    counts = {s: max(2, round(share * n)) for s, share in SPLITS.items()}
    counts["train"] = n - counts["val"] - counts["test"]
    return list(rng.permutation([s for s, c in counts.items() for _ in range(c)]))


def smooth_latent(x: np.ndarray) -> np.ndarray:
    """Columns of ``x`` smoothed over time (Gaussian, sd :data:`SMOOTH_FRAMES`) and rescaled to unit sd."""
    half = int(3 * SMOOTH_FRAMES)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / SMOOTH_FRAMES) ** 2)
    padded = np.pad(x, ((half, half), (0, 0)), mode="reflect")
    out = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(x.shape[1])], 1)
    return (out - out.mean(0)) / out.std(0).clip(1e-6)


def _write_features(results, keys, rows, latents, carried, spec, rng, dim, noise, n_shards) -> dict:
    """Every key's shards: per clip ``features`` (T, dim) and ``timestamps`` (s); returns the files."""
    from affectflow.faces.masking import LOWER_AUS, UPPER_AUS  # OpenCV: only when writing a fixture

    hidden = {"upper": UPPER_AUS, "lower": LOWER_AUS}
    shards = dict(zip(rows["id"].astype(int), shard_column(rows["id"], rows["split"], n_shards), strict=True))
    projections = {key: _projection(rng, dim, len(carried[m])) for key, (m, twin, _) in keys.items() if twin == key}
    steps = {i: (len(z) if spec.per_frame else int(rng.integers(16, 41))) for i, z in latents.items()}
    # each clip's noise is drawn once per projection, so a masked key keeps its twin's noise
    noises = {(key, i): rng.normal(0, noise, (steps[i], dim)).astype(np.float32)
              for key in projections for i in latents}
    per_shard: dict[str, list[int]] = {}
    for i, label in shards.items():
        per_shard.setdefault(label, []).append(i)
    files: dict[str, dict[str, list[str]]] = {}
    for key, (modality, twin, region) in keys.items():
        files[key] = {"labelled": [], "test": []}
        for label, ids in sorted(per_shard.items()):
            path = results / "features" / key / f"shard-{label}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            attrs = {"stage": "features", "backbone": key, "modality": modality, "planted": True}
            with ShardWriter(path, file_attrs=attrs) as writer:
                for i in ids:
                    z = np.broadcast_to(latents[i], (steps[i], latents[i].shape[-1])).copy()
                    if region:  # the masked face shows the hidden AUs as absent
                        z[:, [j for j, t in enumerate(spec.targets) if t in hidden[region]]] = AU_ABSENT
                    x = z[:, carried[modality]] @ projections[twin].T + noises[(twin, i)]
                    writer.add_clip(i, {"features": x.astype(np.float32),
                                        "timestamps": np.arange(steps[i]) / (FPS if spec.per_frame else 10.0)})
            files[key]["test" if label.startswith("test") else "labelled"].append(str(path))
    return files


def _projection(rng, dim: int, n: int) -> np.ndarray:
    """A random (dim, n) map with orthogonal columns, scaled so that each feature dimension carries
    unit signal variance: well conditioned, so every carried component is recoverable from the
    features at the same noise level (a square Gaussian map would bury some under amplified noise)."""
    if dim < n:
        raise ValueError(f"planted features of width {dim} cannot carry {n} latent components")
    q, _ = np.linalg.qr(rng.normal(0, 1, (dim, n)))
    return q * math.sqrt(dim / n)


def write_annotations(rows: pd.DataFrame, labels: dict, spec, root: Path) -> list[str]:
    """One Aff-Wild2 annotation file per labelled track (header, then a line per frame); the
    manifest's ``labels`` column ("" for test tracks)."""
    paths = []
    for i, name, split in zip(rows["id"], rows["name"], rows["split"], strict=True):
        if split == "test":
            paths.append("")
            continue
        path = root / "Annotations" / spec.name / split / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [",".join(spec.targets)] + [",".join(f"{v:g}" for v in row) for row in labels[int(i)]]
        path.write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    return paths


def _check_au_positives(manifest: pd.DataFrame, table: pd.DataFrame, config: dict, spec) -> None:
    """Every AU has positive frames in the training part of every fold of every run's fold scheme."""
    k, seed = config["train"]["k_folds"], config["train"]["seed"]
    for name, run in config["train"]["runs"].items():
        s = settings_from_run(run, seed=seed)
        folds = manifest if s.fold_scheme == "manifest" else make_folds(manifest, s.fold_scheme, k=k, seed=s.seed)
        fold_of = dict(zip(folds["id"], folds["fold"], strict=True))
        track_folds = table["id"].map(fold_of)
        for fold in sorted(set(folds["fold"]) - {TRAIN_ONLY}):
            positives = (table.loc[track_folds != fold, list(spec.targets)] > 0.5).sum()
            if (positives == 0).any():
                raise ValueError(f"planted AU fixture: run {name} fold {fold} trains on no positive of "
                                 f"{list(positives.index[positives == 0])}; use more videos or another seed")
