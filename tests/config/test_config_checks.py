"""Start-up checks and the workflow's look-ups in affectflow.config: losses checked against their
registry (not a schema enum), a run's features keys, each rule's job resources, and defaults read
from the schema."""

from __future__ import annotations

from types import MappingProxyType

import pytest
import yaml

from affectflow.config import check_config
from affectflow.config.names import ConfigError, check_names, registered
from affectflow.config.resources import RULES, job_resources, rule_resources
from affectflow.config.runs import check_branch_inits, modality_backbones, run_backbones, run_folds
from affectflow.config.schema import section_defaults, with_defaults

from conftest import REPO


def demo_config() -> dict:
    """The repository's demo config with the schema's defaults filled in."""
    return with_defaults(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


def test_the_demo_config_passes_every_start_up_check():
    check_config(demo_config())


def test_an_unknown_loss_passes_the_schema_and_fails_the_start_up_check_naming_the_run():
    config = demo_config()
    run = next(iter(config["train"]["runs"]))
    config["train"]["runs"][run]["loss"] = "msee"
    config = with_defaults(config)  # the schema no longer lists the losses
    with pytest.raises(ConfigError, match=rf"train\.runs\.{run}\.loss: unknown 'msee'; known: bce, ccc, mse, pearson"):
        check_names(config)
    with pytest.raises(ConfigError, match="msee"):
        check_config(config)


def test_a_recipes_loss_is_checked_too(monkeypatch):
    import affectflow.training.recipes as recipes

    monkeypatch.setattr(recipes, "RECIPES", MappingProxyType({**recipes.RECIPES, "bad": {"model": "gru",
                                                                                         "loss": "huber"}}))
    config = demo_config()
    run = next(iter(config["train"]["runs"]))
    config["train"]["runs"][run] = {"backbone": config["train"]["runs"][run]["backbone"], "recipe": "bad"}
    with pytest.raises(ConfigError, match=rf"train\.runs\.{run}\.loss: unknown 'huber'"):
        check_names(config)


def test_losses_are_read_from_the_registry_source():
    assert registered("losses") == ["bce", "ccc", "mse", "pearson"]


def test_an_unknown_model_still_fails_at_start_naming_the_run():
    config = demo_config()
    run = next(iter(config["train"]["runs"]))
    config["train"]["runs"][run]["model"] = "grue"
    with pytest.raises(ConfigError, match=rf"train\.runs\.{run}\.model: unknown 'grue'; known: "):
        check_config(config)


def test_a_runs_backbones_are_its_modalities_then_its_masked_copies():
    run = {"backbone": "vis", "fuse_with": ["aud"], "mask_augment": {"upper": "vis_upper", "lower": "vis_lower"}}
    assert modality_backbones(run) == ["vis", "aud"]
    assert run_backbones(run) == ["vis", "aud", "vis_upper", "vis_lower"]
    assert run_backbones({"backbone": "vis"}) == modality_backbones({"backbone": "vis"}) == ["vis"]
    assert run_backbones({"backbone": "vis", "mask_augment": {"upper": "vis"}}) == ["vis"]  # each key once


def test_run_folds_reads_the_scheme_of_the_run_or_its_recipe():
    assert run_folds({"backbone": "v", "model": "gru"}, 3) == 3  # the manifest's folds: k_folds
    assert run_folds({"backbone": "v", "model": "gru", "fold_scheme": "grouped"}, 4) == 4
    assert run_folds({"backbone": "v", "recipe": "deng2023_au"}, 2) == 7  # train in 5 + val in 2
    assert run_folds({"backbone": "v", "model": "gru", "init_branches": ["a"], "freeze_branches": True}, 2) == 2


def test_k_folds_is_required_where_folds_are_compared():
    with pytest.raises(TypeError, match="k_folds"):
        check_branch_inits({"runs": {}})


def test_rule_resources_count_one_shard_for_shard_rules_and_every_shard_for_train():
    config = demo_config()  # 72 demo clips over 3 shards: 24 per shard (test clips included: an upper bound)
    resources = rule_resources(config)
    assert list(resources) == list(RULES)
    for rule in ("media", "faces", "features"):
        assert resources[rule] == job_resources(rule, config["resources"][rule], clips=24)
    # training reads the labelled shards only
    assert resources["train"] == job_resources("train", config["resources"]["train"], clips=72)
    assert resources["train"]["mem_mb"] == 2000  # the schema's base: a train job's memory is flat in the clips
    assert resources["train"]["runtime"] == 10 + 1  # its time is not: 10 min + 0.01 min per clip, rounded up
    config["resources"]["clips_per_shard"] = 5
    assert rule_resources(config)["train"] == job_resources("train", config["resources"]["train"], clips=15)


def test_section_defaults_of_every_entry_of_a_mapping():
    assert section_defaults("features", "*") == {"timeline": "native", "device": "auto"}
    assert section_defaults("dataset", "demo")["n_clips"] == 72
    with pytest.raises(KeyError):
        section_defaults("features", "dlib_face128")  # an entry's name is not a schema key


def test_a_multimodal_model_without_its_other_modalities_fails_at_start():
    from affectflow.config.runs import check_runs

    # Liu et al. 2023 (003)'s GRU recipe fuses early: without fuse_with it has one modality only
    with pytest.raises(ValueError, match=r"runs.gru: model 'fusion' fuses modalities: name the others in fuse_with"):
        check_runs({"runs": {"gru": {"backbone": "densenet", "recipe": "liu2023_va_gru"}}})
    check_runs({"runs": {"gru": {"backbone": "densenet", "recipe": "liu2023_va_gru", "fuse_with": ["wav2vec2"]}}})
    dims = {"modality_dims": [4, 4]}
    check_runs({"runs": {"gru": {"backbone": "densenet", "model": "fusion", "model_params": dims}}})


def test_a_member_trained_on_every_labelled_clip_is_refused_by_fitted_ensembles_at_start():
    config = with_defaults(yaml.safe_load((REPO / "config" / "recipes" / "emi_hallmen2024.yaml").read_text()))
    check_names(config)  # the recipe: its train+val model alone, combined by mean
    for change, named in ((dict(method="weighted"), "weighted"), (dict(compare=["greedy"]), "greedy")):
        bad = {**config, "ensemble": {**config["ensemble"], **change}}
        with pytest.raises(ConfigError, match=rf"'w2v2_lstm_mean_trainval' has fold_scheme mix.*{named}"):
            check_names(bad)
    scored = {**config, "ensemble": {**config["ensemble"], "method": "weighted", "members": ["w2v2_lstm_mean"]}}
    check_names(scored)  # a member with OOF rows may be weighted
