"""Wall time and peak memory of a whole study run from scratch (default: the embedded study, config.yaml).

Run:  .venv/bin/python benchmarks/study.py [--cores 2] [--configfile config/smoke.yaml] [--keep]

The config is copied as config.yaml into a fresh temporary folder and `snakemake -s <repo>/Snakefile -d <tmp>
--cores N` runs there (the Snakefile reads config.yaml from its working directory), so no existing result is
reused and the repository's results/ is never touched. Relative paths inside the config resolve against the
temporary folder. The venv's bin comes first on PATH, as `make study` does, since rules call `jpegstudy`.

Every 0.2 s, psutil reads the RSS and PSS of snakemake and all its descendants. Printed: wall time; the peak of their
summed RSS (jobs run side by side, so this is the study's peak; shared pages count once per process, so it errs high:
every job is a fork of the job server and shares its torch and torchvision pages); the peak of their summed PSS (a
shared page split among the processes that map it, so the sum is the memory the study holds); the largest
single-process RSS; and per-rule wall times (`s`) and peak RSS (`max_rss`,
MB) from snakemake's `benchmark:` files, results/benchmarks/**/*.tsv. Exits non-zero, with the log's tail, if
snakemake fails. The temporary folder is deleted unless --keep.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
GIB = 1024**3


def sample(proc: psutil.Process) -> tuple[int, int, int, str]:
    """(summed RSS, summed PSS, largest RSS, name of the largest) over `proc` and its descendants."""
    total, total_pss, top, top_name = 0, 0, 0, ""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0, ""
    for p in procs:
        try:
            memory = p.memory_full_info()  # Linux: reads /proc/PID/smaps_rollup for pss
            rss = memory.rss
            total += rss
            total_pss += memory.pss
            if rss > top:
                top, top_name = rss, " ".join(p.cmdline()[:3])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # ended between listing and reading
    return total, total_pss, top, top_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jpegstudy-study-"))
    shutil.copyfile(a.configfile, work / "config.yaml")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", str(a.cores)]
    print(f"config: {a.configfile}\nrunning: {' '.join(cmd)}", flush=True)

    log_path = work / "snakemake.log"
    peak_total = peak_pss = peak_one = 0
    peak_name = ""
    try:
        with open(log_path, "wb") as log:
            start = time.perf_counter()
            popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            proc = psutil.Process(popen.pid)
            while popen.poll() is None:
                total, pss, one, name = sample(proc)
                peak_total, peak_pss = max(peak_total, total), max(peak_pss, pss)
                if one > peak_one:
                    peak_one, peak_name = one, name
                time.sleep(a.interval)
            wall = time.perf_counter() - start

        if popen.returncode != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-40:]
            print(f"snakemake failed (exit {popen.returncode}) after {wall:.1f} s; its log ends:", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)
            if not a.keep:
                print("(the job logs named there go with the temporary folder: rerun with --keep)", file=sys.stderr)
            return popen.returncode or 1
        print(f"\nwall time:                {wall:8.1f} s   (--cores {a.cores})")
        print(f"peak total RSS:           {peak_total / GIB:8.2f} GiB (snakemake + all descendants, summed)")
        print(f"peak total PSS:           {peak_pss / GIB:8.2f} GiB (the same processes, shared pages split among them)")
        print(f"peak single-process RSS:  {peak_one / GIB:8.2f} GiB ({peak_name})")
        tsvs = sorted((work / "results" / "benchmarks").rglob("*.tsv"))
        if tsvs:
            print(f"\n{'rule benchmark':<50} {'s':>8} {'max_rss MB':>11}")
            for tsv in tsvs:
                with open(tsv, newline="") as f:
                    for row in csv.DictReader(f, delimiter="\t"):
                        name = str(tsv.relative_to(work / "results" / "benchmarks"))
                        print(f"{name:<50} {float(row['s']):>8.1f} {row.get('max_rss', 'NA'):>11}")
        return 0
    finally:
        if a.keep:
            print(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
