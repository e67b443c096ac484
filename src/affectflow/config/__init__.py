"""Start-up, without torch: the config checked against the registries, options resolved once.

The workflow validates the config with its JSON schema (``workflow/schemas/config.schema.yaml``,
where every default lives) and then calls :func:`check_config`, so that a typo or an impossible
combination fails before any job runs, naming the key and the options. Modules: ``names``
(registered names), ``runs`` (train runs, folds, branch initialisation), ``faces`` (the faces
stage's options), ``resources`` (per-job cpus, memory, runtime, GPUs).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["check_config"]


def check_config(config: Mapping) -> dict:
    """Every start-up check of a schema-validated config (defaults filled in).

    Returns the faces stage's options (:func:`affectflow.config.faces.stage_options`), resolved
    once here, where building them checks them.
    """
    from affectflow.config.faces import stage_options
    from affectflow.config.names import check_names
    from affectflow.config.runs import check_branch_inits, check_runs, without_branch_keys
    from affectflow.features.signature import check_feature_entries

    check_names(config)
    check_feature_entries(config["features"])  # e.g. a face mask on an audio backbone
    check_runs(without_branch_keys(config["train"]), config["features"])
    check_branch_inits(config["train"], k_folds=config["train"]["k_folds"], features=config["features"])
    return stage_options(config["faces"], fps=config["media"]["fps"])
