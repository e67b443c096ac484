"""Yu et al. 2023 (001)'s "unimodal branches trained first and frozen": a fusion model's branches
load fold k's unimodal models (affectflow.config.runs, affectflow.training.branch_init,
FusionModel.init_branches), frozen branches do not learn while the fusion head does, and the
workflow wires fold k of the fused run to fold k of the unimodal runs."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import yaml

from affectflow.config.runs import branch_model_paths, check_branch_inits, check_runs, without_branch_keys
from affectflow.models import create_model
from affectflow.training import checkpoints
from affectflow.training.branch_init import with_branch_checkpoints
from affectflow.training.loop import Trainer, fit
from affectflow.training.recipes import resolve_run
from affectflow.training.sequences import Example
from affectflow.training.settings import TrainSettings

from conftest import REPO

DIMS = [5, 3]
ENCODER = {"hidden": 8, "tcn_layers": 2, "kernel": 3, "dim": 8, "layers": 1, "heads": 2, "dropout": 0.3}
FUSED = {"fusion": "late_encoders", "encoder": "tcn_transformer", **ENCODER, "fusion_dim": 8,
         "modality_dropout": {"p_m": 0.9, "p_v": 0.5}, "pooling": "attention", "head_hidden": [], "sigmoid": True}
UNIMODAL = {**ENCODER, "pooling": "attention", "head_hidden": [], "sigmoid": True}
K = 2


def save_unimodal(path, input_dim, seed, **params):
    """A trained-fold-like model.pt of a unimodal tcn_transformer (random weights)."""
    torch.manual_seed(seed)
    model = create_model("tcn_transformer", input_dim=input_dim, output_dim=K, **{**UNIMODAL, **params})
    checkpoints.save(path, {"state_dict": model.state_dict(), "mean": torch.zeros(input_dim),
                            "std": torch.ones(input_dim)})
    return model


def fused(**params):
    return create_model("fusion", input_dim=sum(DIMS), output_dim=K, modality_dims=DIMS, **{**FUSED, **params})


@pytest.fixture
def branches(tmp_path):
    paths = [tmp_path / f"branch{i}" / "model.pt" for i in range(2)]
    models = [save_unimodal(p, d, seed=10 + i) for i, (p, d) in enumerate(zip(paths, DIMS, strict=True))]
    return [str(p) for p in paths], models


def same(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> bool:
    a = a.state_dict() if isinstance(a, torch.nn.Module) else a
    b = b.state_dict() if isinstance(b, torch.nn.Module) else b
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_loaded_branches_equal_the_checkpoints_encoders(branches):
    paths, models = branches
    model = fused(branch_checkpoints=paths)
    for i in range(2):
        assert same(model.encoders[i], models[i].encoder)
    # null: that branch keeps its own initialisation
    partial = fused(branch_checkpoints=[None, paths[1]])
    assert not same(partial.encoders[0], models[0].encoder)
    assert same(partial.encoders[1], models[1].encoder)


def test_late_predictions_loads_the_whole_unimodal_model(branches, tmp_path):
    paths, models = branches
    model = create_model("fusion", input_dim=sum(DIMS), output_dim=K, modality_dims=DIMS, fusion="late_predictions",
                         encoder="tcn_transformer", branch_checkpoints=paths, **UNIMODAL)
    for i in range(2):
        assert same(model.models[i], models[i])


def test_frozen_branches_stay_in_eval_mode_and_get_no_optimizer_state(branches):
    paths, _ = branches
    model = fused(branch_checkpoints=paths, freeze_branches=True).train()
    assert model.training and model.fuse.training and model.head.training
    assert not any(m.training for encoder in model.encoders for m in encoder.modules())
    assert not any(p.requires_grad for p in model.encoders.parameters())
    # dropout 0.3 is active in train mode, except in the frozen branches
    x, mask = torch.randn(3, 7, sum(DIMS)), torch.ones(3, 7, dtype=torch.bool)
    parts = model.split(x)
    assert torch.equal(model.encoders[0](parts[0], mask), model.encoders[0](parts[0], mask))
    unfrozen = fused(branch_checkpoints=paths).train()
    assert not torch.equal(unfrozen.encoders[0](parts[0], mask), unfrozen.encoders[0](parts[0], mask))
    # Adam skips parameters without gradients: no state, no update for the frozen branches
    settings = TrainSettings(model="fusion", model_params={**FUSED, "modality_dims": DIMS, "branch_checkpoints": paths,
                                                            "freeze_branches": True}, batch_size=4, lr=0.01)
    trainer = Trainer(settings, input_dim=sum(DIMS), output_dim=K)
    trainer.train_batch(examples(4, seed=1), "test")
    frozen = {id(p) for p in trainer.model.encoders.parameters()}
    stepped = {id(p) for p in trainer.optimizer.state}
    assert stepped and not stepped & frozen


def examples(n: int, *, seed: int) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    return [Example.make(torch.randn(6 + i % 3, sum(DIMS), generator=g), torch.rand(K, generator=g)) for i in range(n)]


def fit_fused(paths, *, freeze: bool):
    settings = TrainSettings(model="fusion", model_params={**FUSED, "modality_dims": DIMS, "branch_checkpoints": paths,
                                                            "freeze_branches": freeze},
                             epochs=3, batch_size=4, lr=0.01, seed=3)
    torch.manual_seed(settings.seed)  # the Trainer's seed: the same initial model
    initial = copy.deepcopy(create_model("fusion", input_dim=sum(DIMS), output_dim=K,
                                         **settings.model_params).state_dict())
    model, history = fit(settings, examples(12, seed=2), input_dim=sum(DIMS), output_dim=K)
    assert len(history["train_loss"]) == 3
    return initial, model


def part(state: dict, prefix: str) -> dict:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def test_frozen_branches_do_not_change_in_fit_while_the_fusion_head_does(branches):
    paths, models = branches
    initial, model = fit_fused(paths, freeze=True)
    after = model.state_dict()
    for i in range(2):
        assert same(model.encoders[i], models[i].encoder)
    for prefix in ("fuse.", "head.", "pool."):
        assert not same(part(initial, prefix), part(after, prefix)), prefix


def test_unfrozen_branches_start_from_the_checkpoint_and_keep_learning(branches):
    paths, models = branches
    initial, model = fit_fused(paths, freeze=False)
    for i in range(2):
        assert same(part(initial, f"encoders.{i}."), {f"encoders.{i}.{k}": v for k, v in
                                                       models[i].encoder.state_dict().items()})
        assert not same(model.encoders[i], models[i].encoder)


def test_a_checkpoint_that_does_not_fit_fails_naming_the_file(tmp_path, branches):
    paths, _ = branches
    wider = tmp_path / "wider" / "model.pt"
    save_unimodal(wider, DIMS[0], seed=0, hidden=16)
    with pytest.raises(ValueError, match=rf"{re.escape(str(wider))}.*branch 0.*shape mismatches"):
        fused(branch_checkpoints=[str(wider), paths[1]])
    other = tmp_path / "gru" / "model.pt"
    gru = create_model("gru", input_dim=DIMS[1], output_dim=K)
    checkpoints.save(other, {"state_dict": gru.state_dict(), "mean": torch.zeros(3), "std": torch.ones(3)})
    with pytest.raises(ValueError, match=rf"{re.escape(str(other))}.*branch 1.*missing keys: encoders\.0\."):
        fused(branch_checkpoints=[paths[0], str(other)])
    with pytest.raises(ValueError, match="2 modalities"):
        fused(branch_checkpoints=[paths[0]])
    with pytest.raises(ValueError, match="freeze_branches needs at least one"):
        fused(branch_checkpoints=[None, None], freeze_branches=True)
    with pytest.raises(ValueError, match="no per-modality branches"):
        fused(fusion="early", branch_checkpoints=paths)


# -- config: init_branches / freeze_branches ------------------------------------------------------

def train_config() -> dict:
    return {"k_folds": 2, "seed": 0, "runs": {
        "visual": {"backbone": "v", "model": "tcn_transformer", "model_params": dict(UNIMODAL)},
        "audio": {"backbone": "a", "model": "tcn_transformer", "model_params": dict(UNIMODAL)},
        "fused": {"backbone": "v", "fuse_with": ["a"], "model": "fusion", "model_params": dict(FUSED),
                  "init_branches": ["visual", "audio"], "freeze_branches": True},
    }}


def test_a_consistent_config_passes_and_the_script_gets_fold_k_checkpoints():
    config = train_config()
    check_branch_inits(config, k_folds=config["k_folds"])
    check_runs(without_branch_keys(config), {"v": {}, "a": {}})
    fused_run = config["runs"]["fused"]
    paths = branch_model_paths(fused_run, "results/x/train", 1)
    assert paths == ["results/x/train/visual/fold1/model.pt", "results/x/train/audio/fold1/model.pt"]
    partial = {**fused_run, "init_branches": [None, "audio"]}
    assert branch_model_paths(partial, "r", 0) == ["r/audio/fold0/model.pt"]
    settings = with_branch_checkpoints(partial, ["r/audio/fold0/model.pt"])
    assert "init_branches" not in settings and "freeze_branches" not in settings
    assert settings["model_params"]["branch_checkpoints"] == [None, "r/audio/fold0/model.pt"]
    assert settings["model_params"]["freeze_branches"] is True
    assert settings["model_params"]["fusion_dim"] == FUSED["fusion_dim"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["fused"].update(init_branches=["visual", "nope"]), r"init_branches\[1\]: unknown run 'nope'"),
    (lambda r: r["fused"].update(init_branches=["audio", "visual"]), r"init_branches\[0\]: run 'audio' reads \['a'\]"),
    (lambda r: r["fused"].update(init_branches=["visual"]), r"init_branches: .*one run \(or null\) per modality, 2"),
    (lambda r: r["fused"].update(init_branches=[None, None]), r"init_branches: names no run"),
    (lambda r: r["fused"].update(init_branches=["fused", "audio"]),
     r"init_branches\[0\]: a run cannot initialise itself"),
    (lambda r: r["audio"].update(fold_scheme="grouped"), r"init_branches\[1\]: run 'audio' splits the clips"),
    (lambda r: r["audio"]["model_params"].update(hidden=16), r"init_branches\[1\]: .*does not fit branch 1"),
    (lambda r: r["audio"].update(model="gru", model_params={}), r"init_branches\[1\]: .*does not fit branch 1"),
    (lambda r: r["fused"]["model_params"].update(fusion="early"), r"init_branches: .*no per-modality branches"),
    (lambda r: r["fused"].pop("init_branches"), r"train\.runs\.fused\.freeze_branches: needs init_branches"),
])
def test_a_bad_init_branches_fails_at_start_naming_the_key(change, message):
    config = train_config()
    change(config["runs"])
    with pytest.raises(ValueError, match=r"train\.runs\.fused\." + message.removeprefix(r"train\.runs\.fused\.")):
        check_branch_inits(config, k_folds=config["k_folds"])


# -- the workflow: fold k of the fused run reads fold k of each unimodal run -----------------------

def dry_run_inputs(stdout: str) -> dict[tuple[str, str], list[str]]:
    """(run, k) -> the input files of each train job listed by ``snakemake -n``."""
    jobs, current = {}, None
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")):
            current = {"rule": stripped.split()[1].rstrip(":")}
        elif current is not None and stripped.startswith("input:"):
            current["input"] = [s.strip() for s in stripped[len("input:"):].split(",")]
        elif current is not None and stripped.startswith("wildcards:"):
            wild = dict(item.strip().partition("=")[::2] for item in stripped[len("wildcards:"):].split(","))
            if current["rule"] == "train":
                jobs[(wild["run"], wild["k"])] = current.get("input", [])
    return jobs




def test_the_eri_recipe_trains_its_branches_first_and_freezes_them():
    config = yaml.safe_load((REPO / "config" / "recipes" / "eri_yu2023.yaml").read_text())
    runs = config["train"]["runs"]
    fused_run = runs[config["ensemble"]["members"][0]]
    assert fused_run["freeze_branches"] is True and fused_run["branch_fold"] == "best"  # "with the highest ρ"
    visual, audio = fused_run["init_branches"]
    # the visual modality is the fine-tuned visual branch's own encoder, frozen, from its best fold
    assert config["features"][fused_run["backbone"]] == {"backbone": "finetuned", "run": visual, "fold": "best"}
    assert resolve_run(runs[visual])["finetune"]["input"] == "crops"
    assert runs[audio]["backbone"] == fused_run["fuse_with"][0]
    check_branch_inits(config["train"], k_folds=config["train"]["k_folds"], features=config["features"])
    # a fine-tuned branch read through other features is refused, naming the key
    wrong = {**config["train"], "runs": {**runs, "fused": {**fused_run, "backbone": "resnet18_pool512"}}}
    with pytest.raises(ValueError, match=r"init_branches\[0\]: run 'visual_branch' fine-tunes its encoder"):
        check_branch_inits(wrong, k_folds=config["train"]["k_folds"], features=config["features"])
