"""The one preamble of every workflow script: ``job(snakemake)``.

A rule's script calls it first, then one package function::

    from affectflow.runtime.job import job
    log = job(snakemake, gpu=True)

It sends the package's log records (and an exception that ends the script) to the rule's
``log:`` file, makes ``SIGTERM`` (``scancel``, a time limit) remove half-written outputs and fail
the job, limits torch to the job's threads when asked (training), and for GPU rules claims a
free device of its own, held until the job exits.
"""

from __future__ import annotations

import logging

from affectflow.runtime.logs import setup_logging
from affectflow.runtime.signals import exit_cleanly_on_sigterm

__all__ = ["job"]


def job(snakemake, *, gpu: bool = False, torch_threads: bool = False) -> logging.Logger:
    """Set up a rule's job from its ``snakemake`` object; returns the ``affectflow`` logger.

    ``gpu``: claim a free GPU for the job (rules with ``resources: gpu``). ``torch_threads``: limit
    torch's CPU threads to the job's ``threads`` (training; torch would otherwise use every core).
    """
    log = setup_logging(snakemake.log[0] if snakemake.log else None)
    exit_cleanly_on_sigterm()
    if torch_threads:
        import torch

        torch.set_num_threads(max(1, int(snakemake.threads)))
    if gpu:
        from affectflow.runtime.gpu_slots import claim_gpus_for_job

        claim_gpus_for_job(snakemake)
    return log
