"""How fast snakemake plans the full paper study: `snakemake -n` on config/paper.yaml, timed, with its job count.

Run:  .venv/bin/python benchmarks/dag_dryrun.py [--configfile config/paper.yaml] [--repeat 3] [--profile]

The paper config names datasets and checkpoints under /data. Planning needs the files that are rule inputs to exist
(COCO's annotation files, CSAIL's, the forensic detectors' and QGAC's checkpoints) and the config check wants the
dataset folders, so the config is copied into a temporary folder with every "/data/" path moved beneath it, those
files created there empty and the folders empty (a dry run reads none of them). `snakemake -s <repo>/Snakefile
-d <tmp> --configfile <copy> -n` then runs `--repeat` times in the same working folder. Printed: snakemake's job
stats, each wall time (the first is cold: it imports torchvision to check the models' weights names and transforms;
later runs, and every cluster job, read them from .snakemake/jpegstudy/) and the number of jobs planned.
`--profile` prints the 40 functions with the most cumulative time of one run under cProfile instead (slower for it;
JPEGSTUDY_PROFILE_FILTER=jpegstudy keeps only ours).
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
INPUT_KEYS = ("val_annotations", "train_annotations", "ground_truth", "encoder", "decoder", "weights", "stats")


def relocate(value, root: str):
    """Every string under /data/ moved beneath `root`."""
    if isinstance(value, dict):
        return {k: relocate(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [relocate(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/data/"):
        return root + value[len("/data"):]
    return value


def relocated(value, root: str, key: str = "") -> list[tuple[str, Path]]:
    """(key, path) of every relocated path: files where the key names a rule's input file, else dataset folders."""
    if isinstance(value, dict):  # a numbered entry ({quality: file}) is of its parent's key
        return [p for k, v in value.items() for p in relocated(v, root, k if isinstance(k, str) else key)]
    if isinstance(value, list):
        return [p for v in value for p in relocated(v, root, key)]
    if isinstance(value, str) and value.startswith(root):
        return [(key, Path(value))]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(REPO / "config" / "paper.yaml"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]

    with tempfile.TemporaryDirectory(prefix="jpegstudy-dryrun-") as tmp:
        config = relocate(yaml.safe_load(Path(args.configfile).read_text()), tmp + "/data")
        for key, path in relocated(config, tmp + "/data"):
            if key in INPUT_KEYS:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
        configfile = Path(tmp) / "paper.yaml"
        configfile.write_text(yaml.safe_dump(config))
        work = Path(tmp) / "work"
        work.mkdir()
        command = ["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile", str(configfile),
                   "-n", "--cores", "2"]
        if args.profile:
            command = [sys.executable, "-m", "cProfile", "-o", str(Path(tmp) / "profile"), "-m", "snakemake",
                       *command[1:]]
        times, jobs = [], None
        for _ in range(1 if args.profile else args.repeat):
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if result.returncode != 0:
                sys.exit(f"snakemake -n failed:\n{result.stderr[-3000:]}{result.stdout[-3000:]}")
            stats = result.stdout[result.stdout.find("Job stats"):].split("\n\n")[0]
            found = re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE)
            jobs = int(found.group(1)) if found else None
        if args.profile:
            only = os.environ.get("JPEGSTUDY_PROFILE_FILTER", "")
            pstats.Stats(str(Path(tmp) / "profile")).sort_stats("cumulative").print_stats(only, 40)
        print(stats)
        walls = ", ".join(f"{t:.2f}" for t in times)
        print(f"snakemake -n on {Path(args.configfile).name}: {jobs} jobs; wall {walls} s (first {times[0]:.2f} s, "
              f"then best {min(times[1:] or times):.2f} s)")


if __name__ == "__main__":
    main()
