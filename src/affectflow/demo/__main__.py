"""Command line: ``python -m affectflow.demo RESOURCES OUT_ROOT GROUND_TRUTH PROPERTIES``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from affectflow.demo import __doc__ as package_doc
from affectflow.demo.plan import DEFAULT_MAX_DURATION_S, DEFAULT_N_CLIPS, DEFAULT_SEED
from affectflow.demo.render import build_demo_dataset


def main(argv: Sequence[str] | None = None) -> None:
    """Build the demo set from the command line (see :func:`affectflow.demo.build_demo_dataset`)."""
    ap = argparse.ArgumentParser(prog="python -m affectflow.demo", description=package_doc.splitlines()[0])
    ap.add_argument("resources_dir")
    ap.add_argument("out_root")
    ap.add_argument("ground_truth_csv")
    ap.add_argument("properties_tsv")
    ap.add_argument("--n-clips", type=int, default=DEFAULT_N_CLIPS)
    ap.add_argument("--max-duration-s", type=float, default=DEFAULT_MAX_DURATION_S)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    a = ap.parse_args(argv)
    build_demo_dataset(
        a.resources_dir, a.out_root, a.ground_truth_csv, a.properties_tsv,
        n_clips=a.n_clips, max_duration_s=a.max_duration_s, seed=a.seed,
    )


if __name__ == "__main__":
    main()
