"""Unimodal branches trained first, then loaded (and frozen) in a fused run (paper 001).

A fused run (``backbone`` plus ``fuse_with``, a late-fusion model) may name, per modality, a run
on that modality's backbone alone whose trained model initialises the modality's branch::

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

Fold k of the fused run starts from fold k's ``model.pt`` of each named run, so no branch has
seen fold k's out-of-fold clips. That holds only if the named runs split the clips the same way,
so they must share the fused run's fold scheme, fold count and (for seeded schemes) seed; this
and the branch structure are checked when the workflow starts (:func:`check_branch_inits`).
The key mapping from a unimodal model onto a branch is
:data:`affectflow.models.fusion.BRANCH_KEY_MAP`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch

from affectflow.training.recipes import resolve_run

BRANCH_KEYS = ("init_branches", "freeze_branches")
_PROBE_WIDTH = 4  # input width per modality of the structure check (widths are not known at start)


def without_branch_keys(train_config: Mapping) -> dict:
    """A copy of the ``train`` config with :data:`BRANCH_KEYS` removed from every run (for checks
    that know only training settings, such as :func:`affectflow.training.fold.check_runs`)."""
    out = copy.deepcopy(dict(train_config))
    out["runs"] = {name: {k: v for k, v in run.items() if k not in BRANCH_KEYS}
                   for name, run in train_config["runs"].items()}
    return out


def branch_runs(run: Mapping) -> list[str | None]:
    """The run's ``init_branches`` (one run name or None per modality); [] when it has none."""
    return list(run.get("init_branches") or [])


def branch_model_paths(run: Mapping, train_dir: str, fold: int) -> list[str]:
    """Fold ``fold``'s ``model.pt`` of each run named in ``init_branches`` (nulls skipped), under
    ``train_dir`` (``results/<ds>/train``): the fused run's fold ``fold`` reads exactly these."""
    return [f"{train_dir}/{name}/fold{fold}/model.pt" for name in branch_runs(run) if name is not None]


def with_branch_checkpoints(run: Mapping, paths: list[str]) -> dict:
    """The run without :data:`BRANCH_KEYS`, its ``model_params`` given ``branch_checkpoints`` (a path
    or None per modality, in ``init_branches`` order) and ``freeze_branches``.

    ``paths`` are the files of :func:`branch_model_paths` for the fold being trained, in order.
    """
    names = branch_runs(run)
    out = {k: copy.deepcopy(v) for k, v in run.items() if k not in BRANCH_KEYS}
    if not names:
        if run.get("freeze_branches"):
            raise ValueError("freeze_branches needs init_branches (the unimodal runs to load)")
        return out
    named = [n for n in names if n is not None]
    if len(paths) != len(named):
        raise ValueError(f"init_branches names {len(named)} run(s) ({', '.join(named)}) but "
                         f"{len(paths)} checkpoint path(s) were given: {paths}")
    given = iter(paths)
    checkpoints = [None if name is None else str(next(given)) for name in names]
    out["model_params"] = {**out.get("model_params", {}), "branch_checkpoints": checkpoints,
                           "freeze_branches": bool(run.get("freeze_branches", False))}
    return out


def _model_params(resolved: dict) -> dict:
    return {k: v for k, v in resolved.get("model_params", {}).items()
            if k not in ("branch_checkpoints", "freeze_branches")}


def _probe_fusion(key: str, resolved: dict, n_modalities: int):
    """The fused run's model built on the meta device (no memory, no weights) with probe widths."""
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


def check_branch_inits(train_config: Mapping, *, k_folds: int = 2) -> None:
    """Fail at workflow start, naming the key, for an ``init_branches`` that names an unknown run,
    a run on another backbone (or fused itself), the wrong number of entries, a run whose folds
    differ from the fused run's (its model would have seen the fold's out-of-fold clips), or a
    run whose model does not fit the branch; and for ``freeze_branches`` without ``init_branches``."""
    from affectflow.models import create_model
    from affectflow.models.fusion import branch_mismatch, unimodal_branch_state
    from affectflow.training.fold import run_folds

    runs = train_config["runs"]
    for name, run in runs.items():
        key = f"train.runs.{name}.init_branches"
        if "init_branches" not in run:
            if run.get("freeze_branches"):
                raise ValueError(f"train.runs.{name}.freeze_branches: needs init_branches (the unimodal runs "
                                 "whose trained branches are frozen)")
            continue
        names = run["init_branches"]
        modalities = [run["backbone"], *run.get("fuse_with", [])]
        if not isinstance(names, list) or len(names) != len(modalities):
            raise ValueError(f"{key}: {names!r} must list one run (or null) per modality, "
                             f"{len(modalities)} for {modalities} (backbone, then fuse_with)")
        if all(n is None for n in names):
            raise ValueError(f"{key}: names no run (all null)")
        resolved = resolve_run(run)
        fused, dims = _probe_fusion(key, resolved, len(modalities))
        scheme = resolved.get("fold_scheme", "manifest")
        for i, (other, backbone) in enumerate(zip(names, modalities)):
            if other is None:
                continue
            where = f"{key}[{i}]"
            if other not in runs:
                raise ValueError(f"{where}: unknown run {other!r}; runs: {', '.join(runs)}")
            if other == name:
                raise ValueError(f"{where}: a run cannot initialise itself")
            source = runs[other]
            if source["backbone"] != backbone or source.get("fuse_with"):
                on = [source["backbone"], *source.get("fuse_with", [])]
                raise ValueError(f"{where}: run {other!r} reads {on}, but modality {i} of {name!r} is "
                                 f"{backbone!r}; name a run on backbone {backbone!r} alone")
            theirs = resolve_run(source)
            their_scheme = theirs.get("fold_scheme", "manifest")
            same_seed = scheme == "manifest" or theirs.get("seed") == resolved.get("seed")
            if (their_scheme != scheme or run_folds(source, k_folds) != run_folds(run, k_folds)
                    or not same_seed):
                raise ValueError(
                    f"{where}: run {other!r} splits the clips differently (fold_scheme {their_scheme!r}, "
                    f"{run_folds(source, k_folds)} folds, seed {theirs.get('seed')}) from {name!r} "
                    f"(fold_scheme {scheme!r}, {run_folds(run, k_folds)} folds, seed {resolved.get('seed')}): "
                    "its fold-k model would have seen fold k's out-of-fold clips")
            try:
                with torch.device("meta"):
                    unimodal = create_model(theirs["model"], input_dim=dims[i], output_dim=2, **_model_params(theirs))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{where}: run {other!r}'s model cannot be built: {err}") from None
            why = branch_mismatch(fused.branches[i], unimodal_branch_state(unimodal.state_dict(), fused.fusion))
            if why:
                raise ValueError(f"{where}: run {other!r}'s model ({theirs['model']}) does not fit branch {i} of "
                                 f"{name!r} ({fused.fusion} with its encoder params): {why}")
