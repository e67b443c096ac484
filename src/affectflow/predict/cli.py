"""``affectflow``: the short commands in front of the workflow.

    affectflow predict VIDEOS... --bundle DIR --out DIR [--cores N] [--profile P] [--shards N]
    affectflow bundle --out DIR [--configfile F] [--cores N] [--profile P]

Both run this checkout's Snakemake workflow (its CLI, in the current directory, where Snakemake
keeps its ``.snakemake`` records), so caching, resuming after an interruption and cluster profiles
work as for training: ``predict`` asks for the workflow's ``predict`` target with the bundle's
config and the videos; ``bundle`` for its ``bundle`` target (training first, if needed), then
copies the bundle to ``--out`` (a folder, or an archive when it ends in ``.tar.gz``). While
Snakemake runs, one progress line per finished job says the stage and how many of its jobs are
done; Snakemake's whole output is kept in ``<out>/affectflow.log`` (``--verbose`` prints it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from affectflow.features.weights import REPO_ROOT
from affectflow.predict.bundle import BUNDLE_FILE

__all__ = ["main", "snakemake_command"]

SNAKEFILE = REPO_ROOT / "Snakefile"
_FINISHED = re.compile(r"Finished jobid: \d+ \(Rule: (\w+)\)")
_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")


def snakemake_command(target: str, *, configfile: str | os.PathLike | None, cores: str, profile: str | None,
                      extra: Sequence[str] = ()) -> list[str]:
    """The Snakemake command line that builds ``target`` with this checkout's workflow."""
    # the target first: --configfile takes every value up to the next option
    cmd = [sys.executable, "-m", "snakemake", target, "--snakefile", str(SNAKEFILE), "--cores", str(cores), *extra]
    if profile:
        cmd += ["--profile", profile]
    if configfile:
        cmd += ["--configfile", str(configfile)]
    return cmd


def run_workflow(cmd: list[str], log_path: Path, *, verbose: bool) -> int:
    """Run ``cmd``, its output to ``log_path``; print a progress line per finished job (stage and
    its count from Snakemake's job table). Returns the exit code."""
    totals: dict[str, int] = {}
    done: dict[str, int] = {}
    in_stats = False
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, env=env) as proc:
        for line in proc.stdout:
            log.write(line)
            if verbose:
                print(line, end="", flush=True)
            stripped = line.strip()
            if stripped.startswith("Job stats:"):
                in_stats = True
            elif in_stats and (row := _STATS_ROW.match(stripped)):
                if row.group(1) != "total":
                    totals[row.group(1)] = int(row.group(2))
                else:
                    in_stats = False
            elif match := _FINISHED.search(stripped):
                rule = match.group(1)
                done[rule] = done.get(rule, 0) + 1
                stage = rule.removeprefix("predict_") if rule != "predict" else "done"
                print(f"affectflow: {stage:<10} {done[rule]}/{totals.get(rule, '?')}", flush=True)
    if proc.returncode:
        tail = log_path.read_text().splitlines()[-25:]
        print("\n".join(tail), file=sys.stderr)
        print(f"affectflow: Snakemake failed (exit {proc.returncode}); its whole output: {log_path}", file=sys.stderr)
    return proc.returncode


def _unpacked(bundle: Path, out: Path) -> Path:
    """A bundle folder: ``bundle`` itself, or an archive's extracted copy under ``out``."""
    if bundle.is_dir():
        return bundle
    if not bundle.is_file():
        raise SystemExit(f"affectflow predict: --bundle {bundle} does not exist")
    if not tarfile.is_tarfile(bundle):
        raise SystemExit(f"affectflow predict: --bundle {bundle} is neither a bundle folder nor a .tar.gz archive")
    target = out / "bundle"
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(bundle) as archive:
        archive.extractall(target, filter="data")  # "data": no absolute paths, links out, devices
    inner = [p for p in target.iterdir() if p.is_dir()]
    return inner[0] if len(inner) == 1 and not (target / "bundle.json").exists() else target


def predict(args: argparse.Namespace) -> int:
    """``affectflow predict``: the bundle's config with the videos, the workflow's predict target."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    bundle = _unpacked(Path(args.bundle).resolve(), out)
    config_path = bundle / "config.yaml"
    if not config_path.is_file():
        raise SystemExit(f"affectflow predict: {bundle} has no config.yaml: not a bundle (affectflow bundle makes one)")
    config = yaml.safe_load(config_path.read_text())
    config["predict"] = {"videos": [str(Path(v).resolve()) for v in args.videos], "bundle": str(bundle),
                         "out": str(out), "shards": args.shards}
    configfile = out / "affectflow_predict.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"affectflow: predicting {', '.join(args.videos)} with {bundle} into {out}", flush=True)
    extra = ["--dry-run"] if args.dry_run else []
    code = run_workflow(snakemake_command("predict", configfile=configfile, cores=args.cores, profile=args.profile,
                                          extra=extra), out / "affectflow.log", verbose=args.verbose)
    if not code and not args.dry_run:
        print(f"affectflow: {out / 'index.html'} (page), {out / 'summary.csv'} (one row per video), "
              f"{out / 'videos'} (per video: csv and plot)")
    return code


def export(args: argparse.Namespace) -> int:
    """``affectflow bundle``: the workflow's bundle target, copied to ``--out``."""
    out = Path(args.out).resolve()
    _refuse_to_overwrite(out)
    config = yaml.safe_load(Path(args.configfile or REPO_ROOT / "config" / "config.yaml").read_text())
    made = Path("results") / config["dataset"]["name"] / "bundle" / config.get("ensemble", {}).get("name", "late_mean")
    code = run_workflow(snakemake_command("bundle", configfile=args.configfile, cores=args.cores, profile=args.profile),
                        Path("logs") / "affectflow_bundle.log", verbose=args.verbose)
    if code:
        return code
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # complete before it takes the place of an older bundle
    if out.name.endswith(".tar.gz"):
        with tarfile.open(tmp, "w:gz") as archive:
            archive.add(made, arcname=out.name.removesuffix(".tar.gz"))
        os.replace(tmp, out)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(made, tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    print(f"affectflow: bundle {out}")
    return 0


def _refuse_to_overwrite(out: Path) -> None:
    """An existing ``--out`` is replaced only when it is a bundle (or an archive file): never a
    folder of other things (``--out results`` must not delete a training run)."""
    if out.is_dir() and any(out.iterdir()) and not (out / BUNDLE_FILE).is_file():
        raise SystemExit(f"affectflow bundle: --out {out} is a folder that holds other things than a bundle; "
                         "name a new or empty folder, or an old bundle to replace")
    if out.exists() and not out.is_dir() and not out.name.endswith(".tar.gz"):
        raise SystemExit(f"affectflow bundle: --out {out} is a file; name a folder, or an archive ending in .tar.gz")


def parser() -> argparse.ArgumentParser:
    """The command line of ``affectflow``."""
    top = argparse.ArgumentParser(prog="affectflow", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    for name, helptext in (("predict", "apply a trained ensemble (a bundle) to videos"),
                           ("bundle", "export the trained ensemble of a config as a bundle")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--cores", default="all", help="cores for Snakemake (default: all)")
        cmd.add_argument("--profile", help="a Snakemake profile, e.g. profiles/slurm")
        cmd.add_argument("--verbose", action="store_true", help="print Snakemake's whole output")
    p = sub.choices["predict"]
    p.add_argument("videos", nargs="+", help="video files, folders of videos, or text files listing videos")
    p.add_argument("--bundle", required=True, help="a bundle folder or .tar.gz (affectflow bundle)")
    p.add_argument("--out", required=True, help="the folder for the predictions (and the jobs' files)")
    p.add_argument("--shards", type=int, default=1, help="shards of the videos: jobs per stage (default 1)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs without running them")
    b = sub.choices["bundle"]
    b.add_argument("--out", required=True, help="the bundle's folder, or an archive path ending in .tar.gz")
    b.add_argument("--configfile", help="the training config (default: config/config.yaml, the demo)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``affectflow`` command."""
    args = parser().parse_args(argv)
    return predict(args) if args.command == "predict" else export(args)


if __name__ == "__main__":
    sys.exit(main())
