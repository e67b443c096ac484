"""The train config's runs at workflow start: fold counts, settings checks and unimodal branch inits.

Neither importing this module nor its checks load torch (the workflow builds its job graph with
them), except :func:`check_branch_inits` for a run that names ``init_branches``: whether a
unimodal run's model fits the fused model's branch is checked on models built on torch's meta
device.

Branch inits (Yu et al. 2023, 001): a fused run (``backbone`` plus ``fuse_with``, a late-fusion
model) may name, per modality, a run on that modality's backbone alone whose trained model
initialises the modality's branch::

    train:
      runs:
        visual: {backbone: resnet18_pool512, recipe: yu2023_eri_branch}
        audio: {backbone: mfcc128_stack8, recipe: yu2023_eri_branch}
        fused:
          backbone: resnet18_pool512
          fuse_with: [mfcc128_stack8]
          recipe: yu2023_eri
          init_branches: [visual, audio]  # one per modality (backbone, *fuse_with); null: from scratch
          freeze_branches: true           # the loaded branches stop learning

Fold k of the fused run starts from fold k's ``model.pt`` of each named run
(:func:`branch_model_paths`), so no branch has seen fold k's out-of-fold clips. That holds only
if the named runs split the clips the same way, so they must share the fused run's fold scheme,
fold count and (for seeded schemes) seed; this and the branch structure are checked by
:func:`check_branch_inits`. The training job hands the checkpoints to the model with
:func:`affectflow.training.branch_init.with_branch_checkpoints`, where the branch keys live.

:func:`run_backbones` says which ``features`` keys a run reads (the train rule's inputs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

from affectflow.data.folds import n_folds
from affectflow.training.branch_init import (
    BRANCH_KEYS,
    BRANCH_PARAMS,
    branch_fold,
    branch_runs,
    check_freeze_needs_init,
)
from affectflow.training.recipes import resolve_run
from affectflow.training.settings import settings_from_run

__all__ = ["branch_model_paths", "check_branch_inits", "check_finetune", "check_mask_augment", "check_runs",
           "finetune_input", "finetune_weights", "finetuned_fold", "modality_backbones", "run_backbones", "run_folds",
           "with_finetuned_models", "without_branch_keys"]

_PROBE_WIDTH = 4  # input width per modality of the structure check (widths are not known at start)
_PROBE_K = 2  # a fold count for checking a fold scheme's name (the count does not matter)


def modality_backbones(run: Mapping) -> list[str]:
    """The ``features`` keys a run fuses, one per modality: ``backbone``, then ``fuse_with``."""
    return [run["backbone"], *run.get("fuse_with", [])]


def run_backbones(run: Mapping) -> list[str]:
    """Every ``features`` key a run reads, each once: :func:`modality_backbones`, then the
    face-masked copies of its backbone (``mask_augment``, Deng et al. 2023, 004)."""
    backbones = modality_backbones(run)
    masked = resolve_run(run).get("mask_augment", {}).values()  # the run's own, else its recipe's
    return backbones + [b for b in masked if b not in backbones]


def finetune_input(run: Mapping) -> str | None:
    """What a fine-tuning run reads (its ``finetune`` block's ``input``: ``crops`` from the faces
    shards, ``audio`` from the media shards); None for a run on cached features."""
    block = resolve_run(dict(run)).get("finetune") or {}
    return block.get("input") if isinstance(block, Mapping) else None


#: The face-crop / audio input each modality of a features backbone gives a fine-tuning run.
_INPUT_OF_MODALITY = {"visual": "crops", "audio": "audio"}


def finetune_weights(run: Mapping, features: Mapping) -> str:
    """The weights a fine-tuning run's encoder starts from: its backbone entry's ``weights`` (a
    weights manifest entry or a path; the backbone's default when the entry sets none); "" for a
    run on cached features or a backbone without weights (the encoder then starts from random ones)."""
    import inspect

    from affectflow.features import BACKBONES  # registers the built-in backbones

    if not finetune_input(run):
        return ""
    entry = features.get(run["backbone"]) or {}
    if entry.get("weights"):
        return str(entry["weights"])
    default = inspect.signature(BACKBONES.get(entry.get("backbone", run["backbone"]))).parameters.get("weights")
    return str(default.default) if default is not None and isinstance(default.default, str) else ""


def check_finetune(name: str, run: Mapping, features: Mapping) -> None:
    """A fine-tuning run must name a configured backbone entry of its input's modality (face
    crops: a visual backbone; audio: an audio one), whose weights its encoder starts from."""
    from affectflow.features import BACKBONES  # registers the built-in backbones

    source = finetune_input(run)
    if source is None:
        return
    where = f"train.runs.{name}"
    if run.get("fuse_with") or run.get("init_branches"):
        raise ValueError(f"{where}: a fine-tuning run reads one input ({source}); fuse its features downstream "
                         "(a features entry with backbone finetuned) instead of fuse_with / init_branches")
    backbone = run["backbone"]
    if backbone not in features:
        raise ValueError(f"{where}.backbone: {backbone!r} is not configured under features "
                         f"(configured: {', '.join(features) or 'none'}); a fine-tuning run names the entry whose "
                         "weights its encoder starts from")
    entry = features[backbone] or {}
    modality = getattr(BACKBONES.get(entry.get("backbone", backbone)), "modality", None)
    if _INPUT_OF_MODALITY.get(modality) != source:
        raise ValueError(f"{where}: finetune.input {source} needs a backbone of modality "
                         f"{'visual' if source == 'crops' else 'audio'}, but features.{backbone} is {modality}")


def with_finetuned_models(features: Mapping, runs: Mapping, train_dir: str, k_folds: int) -> dict:
    """The ``features`` entries, each ``backbone: finetuned`` one (features of a fine-tuning run's
    fold encoder, :mod:`affectflow.features.backbones.finetuned`) given the run's directory
    (``models``, under ``train_dir``), its ``input`` and its number of ``folds`` (``k_folds``: the
    config's, for a run whose fold scheme does not fix it; ``fold: best`` chooses among them only).
    An entry naming no run, an unknown run or
    one that does not fine-tune fails naming the key."""
    out = {}
    for key, entry in features.items():
        entry = dict(entry or {})
        if entry.get("backbone") == "finetuned":
            run = entry.get("run")
            if run not in runs:
                raise ValueError(f"features.{key}.run: {run!r} is not a run of train.runs "
                                 f"({', '.join(runs) or 'none'}); backbone finetuned reads a fine-tuning run's folds")
            source = finetune_input(runs[run])
            if source is None:
                raise ValueError(f"features.{key}.run: run {run!r} trains on cached features; backbone finetuned "
                                 "reads the encoder of a fine-tuning run (model finetune)")
            entry.update(models=f"{train_dir}/{run}", input=source, folds=run_folds(runs[run], k_folds))
        out[key] = entry
    return out


def finetuned_fold(entry: Mapping, n_folds: int) -> list[int]:
    """The folds whose files a ``finetuned`` features entry reads: all (``fold: best`` chooses among
    them by score) or the one it names (which must exist)."""
    fold = entry.get("fold", "best")
    if fold == "best":
        return list(range(n_folds))
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise ValueError(f"features entry of run {entry.get('run')!r}: fold {fold!r} is not 'best' or one of its "
                         f"{n_folds} folds")
    return [fold]


def run_folds(run: dict, k_folds: int) -> int:
    """How many fold jobs a config run makes: its fold scheme's count, else ``k_folds``."""
    scheme = settings_from_run(run).fold_scheme
    return k_folds if scheme == "manifest" else n_folds(scheme, k_folds)


def check_runs(train_config: dict, features: dict | None = None) -> None:
    """Fail at workflow start for a run with an unknown setting, recipe, fold scheme or fused
    backbone (``fuse_with`` names missing from ``features``). Model names are checked by
    :func:`affectflow.config.names.check_names`."""
    for name, run in train_config["runs"].items():
        try:
            s = settings_from_run(run)
            if s.fold_scheme != "manifest":
                n_folds(s.fold_scheme, _PROBE_K)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"train.runs.{name}: {err}") from None
        _check_modalities(name, run, s)
        if isinstance(s.normalise, (list, tuple)) and len(s.normalise) != len(modality_backbones(run)):
            raise ValueError(f"train.runs.{name}.normalise: {len(s.normalise)} entries for "
                             f"{len(modality_backbones(run))} modalities {modality_backbones(run)}")
        for other in run.get("fuse_with", []):
            if features is not None and other not in features:
                raise ValueError(f"train.runs.{name}.fuse_with: {other!r} is not configured under features "
                                 f"(configured: {', '.join(features) or 'none'})")
        if features is not None:
            check_mask_augment(name, run["backbone"], s.mask_augment, features)
            check_finetune(name, run, features)


def _check_modalities(name: str, run: Mapping, settings) -> None:
    """A model built for several modalities (``@multimodal``) needs them: ``fuse_with``, or
    ``model_params.modality_dims``; fail at start rather than in the training job."""
    from affectflow.registry import declared_with

    if settings.model in declared_with("affectflow.models", "MODELS", "multimodal") and not run.get("fuse_with") \
            and "modality_dims" not in settings.model_params:
        raise ValueError(f"train.runs.{name}: model {settings.model!r} fuses modalities: name the others in fuse_with "
                         f"(or give model_params.modality_dims)")


def check_mask_augment(run_name: str, backbone: str, mask_augment: dict, features: dict) -> None:
    """Each ``mask_augment`` entry must name a ``features`` key that is the run's ``backbone``
    (same backbone and parameters) with ``mask`` set to that region; else fail naming the key."""
    from affectflow.features.signature import RUNTIME_KEYS  # features loads the backbone registry

    def core(key):  # what makes the features: backbone name and parameters, not mask or speed
        entry = dict(features[key] or {})
        entry.setdefault("backbone", key)
        return {k: v for k, v in entry.items() if k not in ("mask", *RUNTIME_KEYS)}

    for region, key in mask_augment.items():
        where = f"train.runs.{run_name}.mask_augment.{region}"
        if key not in features:
            raise ValueError(f"{where}: {key!r} is not configured under features "
                             f"(configured: {', '.join(features) or 'none'})")
        mask = (features[key] or {}).get("mask")
        if mask != region:
            raise ValueError(f"{where}: features.{key} has mask {mask!r}; the {region}-masked copy needs "
                             f"features.{key}.mask: {region}")
        if backbone in features and core(key) != core(backbone):
            raise ValueError(f"{where}: features.{key} must be the run's backbone features.{backbone} with mask "
                             f"{region} (same backbone and parameters): {core(key)} != {core(backbone)}")


def without_branch_keys(train_config: Mapping) -> dict:
    """A copy of the ``train`` config with :data:`BRANCH_KEYS` removed from every run (for checks
    that know only training settings, such as :func:`check_runs`)."""
    out = copy.deepcopy(dict(train_config))
    out["runs"] = {name: {k: v for k, v in run.items() if k not in BRANCH_KEYS}
                   for name, run in train_config["runs"].items()}
    return out


def branch_model_paths(run: Mapping, train_dir: str, fold: int, folds_of: Callable[[str], int] | None = None
                       ) -> list[str]:
    """The ``model.pt`` files of the runs named in ``init_branches`` (nulls skipped), under
    ``train_dir`` (``results/<ds>/train``), that the fused run's fold ``fold`` reads: each run's fold
    ``fold``, or with ``branch_fold: best`` every fold of each (``folds_of(run name)`` folds), among
    which the training job takes the best-scoring one."""
    names = [name for name in branch_runs(run) if name is not None]
    if branch_fold(run) == "same":
        return [f"{train_dir}/{name}/fold{fold}/model.pt" for name in names]
    if folds_of is None:
        raise ValueError("branch_fold best: branch_model_paths needs folds_of (each named run's fold count)")
    return [f"{train_dir}/{name}/fold{k}/{file}" for name in names for k in range(folds_of(name))
            for file in ("model.pt", "metrics.json")]


def _model_params(resolved: dict) -> dict:
    """A resolved run's ``model_params`` without the branch checkpoints the training job adds."""
    return {k: v for k, v in resolved.get("model_params", {}).items() if k not in BRANCH_PARAMS}


def _probe_fusion(key: str, resolved: dict, n_modalities: int):
    """The fused run's model built on the meta device (no memory, no weights) with probe widths."""
    import torch

    from affectflow.models import create_model
    from affectflow.models.fusion import BRANCH_KEY_MAP, FusionModel

    params = _model_params(resolved)
    dims = [int(d) for d in params.pop("modality_dims", None) or [_PROBE_WIDTH] * n_modalities]
    try:
        with torch.device("meta"):
            model = create_model(resolved["model"], input_dim=sum(dims), output_dim=2, modality_dims=dims, **params)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{key}: the run's model cannot be built: {err}") from None
    if not isinstance(model, FusionModel) or model.fusion not in BRANCH_KEY_MAP:
        fusion = getattr(model, "fusion", None)
        raise ValueError(f"{key}: model {resolved['model']!r}" + (f" (fusion {fusion!r})" if fusion else "")
                         + f" has no per-modality branches to initialise; use a fusion model with fusion "
                         f"{' or '.join(BRANCH_KEY_MAP)}")
    return model, dims


def _check_branch_fit(where: str, name: str, other: str, theirs: dict, fused, branch: int, width: int) -> None:
    """Run ``other``'s model (resolved settings ``theirs``), built on the meta device with input
    ``width``, must fit branch ``branch`` of the probed fused model of run ``name``."""
    import torch

    from affectflow.models import create_model
    from affectflow.models.fusion import branch_mismatch, unimodal_branch_state

    try:
        with torch.device("meta"):
            unimodal = create_model(theirs["model"], input_dim=width, output_dim=2, **_model_params(theirs))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: run {other!r}'s model cannot be built: {err}") from None
    why = branch_mismatch(fused.branches[branch], unimodal_branch_state(unimodal.state_dict(), fused.fusion))
    if why:
        raise ValueError(f"{where}: run {other!r}'s model ({theirs['model']}) does not fit branch {branch} of "
                         f"{name!r} ({fused.fusion} with its encoder params): {why}")


def _check_finetuned_branch(where: str, name: str, run: Mapping, other: str, source: Mapping, backbone: str,
                            i: int, features: Mapping | None) -> None:
    """A fine-tuned branch (run ``other``, whose temporal model becomes branch ``i``): modality ``i``
    reads its encoder's features (a ``finetuned`` entry of run ``other``), both from its best fold
    (``branch_fold: best``, the entry's ``fold: best``: the branch and its features come from the
    same encoder), from a run with out-of-fold scores, and left unstandardised when frozen."""
    entry = (features or {}).get(backbone) or {}
    if features is not None and (entry.get("backbone") != "finetuned" or entry.get("run") != other):
        raise ValueError(f"{where}: run {other!r} fine-tunes its encoder: modality {i} of {name!r} must read its "
                         f"features (a features entry {{backbone: finetuned, run: {other}}}), not {backbone!r}")
    if branch_fold(run) != "best" or entry.get("fold", "best") != "best":
        raise ValueError(f"{where}: run {other!r} fine-tunes its encoder, so its branch and the features "
                         f"{backbone!r} must come from the same fold: set branch_fold: best on {name!r} and "
                         f"fold: best on features.{backbone}")
    if settings_from_run(source).fold_scheme == "mix":
        raise ValueError(f"{where}: run {other!r} has fold_scheme mix: no out-of-fold score picks its best fold")
    normalise = run.get("normalise", resolve_run(run).get("normalise", True))
    keeps_raw = normalise is False or (isinstance(normalise, list) and i < len(normalise) and normalise[i] is False)
    if run.get("freeze_branches") and not keeps_raw:
        raise ValueError(f"{where}: the frozen branch of run {other!r} was trained on its encoder's raw outputs: "
                         f"set normalise false for modality {i} of {name!r} (e.g. normalise: [false, true])")


def check_branch_inits(train_config: Mapping, *, k_folds: int, features: Mapping | None = None) -> None:
    """Fail at workflow start, naming the key, for an ``init_branches`` that names an unknown run,
    a run on another backbone (or fused itself), the wrong number of entries, a run whose folds
    differ from the fused run's (its model would have seen the fold's out-of-fold clips), or a
    run whose model does not fit the branch; and for ``freeze_branches`` without ``init_branches``.
    ``k_folds`` and ``train_config``'s ``seed`` are the config's, for runs that set none. A branch
    run that fine-tunes its encoder must be read through a ``finetuned`` features entry of
    ``features`` (the config's, when given)."""
    runs = train_config["runs"]
    for name, run in runs.items():
        key = f"train.runs.{name}.init_branches"
        check_freeze_needs_init(run, f"train.runs.{name}.freeze_branches")
        try:
            branch_fold(run)
        except ValueError as err:
            raise ValueError(f"train.runs.{name}: {err}") from None
        if "init_branches" not in run:
            continue
        names = run["init_branches"]
        modalities = modality_backbones(run)
        if not isinstance(names, list) or len(names) != len(modalities):
            raise ValueError(f"{key}: {names!r} must list one run (or null) per modality, "
                             f"{len(modalities)} for {modalities} (backbone, then fuse_with)")
        if all(n is None for n in names):
            raise ValueError(f"{key}: names no run (all null)")
        resolved = resolve_run(run)
        fused, dims = _probe_fusion(key, resolved, len(modalities))
        ours = settings_from_run(run, seed=train_config.get("seed"))
        for i, (other, backbone) in enumerate(zip(names, modalities, strict=True)):
            if other is None:
                continue
            where = f"{key}[{i}]"
            if other not in runs:
                raise ValueError(f"{where}: unknown run {other!r}; runs: {', '.join(runs)}")
            if other == name:
                raise ValueError(f"{where}: a run cannot initialise itself")
            source = runs[other]
            if finetune_input(source) is not None:
                _check_finetuned_branch(where, name, run, other, source, backbone, i, features)
                theirs = resolve_run(source)["model_params"]
                _check_branch_fit(where, name, other, {"model": theirs["temporal"],
                                                       "model_params": theirs.get("temporal_params", {})},
                                  fused, i, dims[i])
                continue
            if modality_backbones(source) != [backbone]:
                raise ValueError(f"{where}: run {other!r} reads {modality_backbones(source)}, but modality {i} of "
                                 f"{name!r} is {backbone!r}; name a run on backbone {backbone!r} alone")
            theirs = settings_from_run(source, seed=train_config.get("seed"))
            same_seed = ours.fold_scheme == "manifest" or theirs.seed == ours.seed
            if (theirs.fold_scheme != ours.fold_scheme or run_folds(source, k_folds) != run_folds(run, k_folds)
                    or not same_seed):
                raise ValueError(
                    f"{where}: run {other!r} splits the clips differently (fold_scheme {theirs.fold_scheme!r}, "
                    f"{run_folds(source, k_folds)} folds, seed {theirs.seed}) from {name!r} "
                    f"(fold_scheme {ours.fold_scheme!r}, {run_folds(run, k_folds)} folds, seed {ours.seed}): "
                    "its fold-k model would have seen fold k's out-of-fold clips")
            _check_branch_fit(where, name, other, resolve_run(source), fused, i, dims[i])
