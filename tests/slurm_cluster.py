"""A one-node Slurm cluster on this machine, for tests/test_slurm.py: munged, slurmctld and slurmd started here and
stopped again, each by its pid.

Debian's slurm-wlm (slurmctld, slurmd, slurm-client) and munge (scripts/system-packages installs them for the tests).
The daemons run as root in the foreground (so the pids are the processes themselves), with their state, spool and
logs in a temporary folder. The config must be at /etc/slurm/slurm.conf: snakemake's slurm jobstep plugin drops
SLURM_CONF before its inner srun (../shared/notes/slurm.md). A slurm.conf already there is put back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil

CONF = Path("/etc/slurm/slurm.conf")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # the daemons live in sbin


def tool(name: str) -> str | None:
    return shutil.which(name, path=SEARCH)

TEMPLATE = """\
ClusterName=jpegstudy
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1 \
RealMemory={memory} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    absent = [name for name in DAEMONS if tool(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed (scripts/system-packages test installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "the one-node cluster's daemons run as root"
    return None


def _munge_works() -> bool:
    encode = subprocess.run(["munge", "-n"], capture_output=True)
    return encode.returncode == 0 and subprocess.run(["unmunge"], input=encode.stdout,
                                                     capture_output=True).returncode == 0


def _wait(what: str, ready, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tails = "\n".join(f"{p}:\n{p.read_text()[-1500:]}" for p in logs if p.exists())
            raise RuntimeError(f"slurm test cluster: {what} not ready after {timeout:.0f} s\n{tails}")
        time.sleep(0.5)


def _node_idle() -> bool:
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return state.returncode == 0 and state.stdout.strip() in ("idle", "mix")


@contextlib.contextmanager
def cluster(root: Path):
    """Start the cluster, yield, stop every daemon started here (by pid) and put /etc/slurm/slurm.conf back."""
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    memory = int(psutil.virtual_memory().total / 2**20 * 0.8)
    saved = CONF.read_bytes() if CONF.exists() else None
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(TEMPLATE.format(host=host, root=root, cpus=os.cpu_count(), memory=memory))
    started: list[subprocess.Popen] = []
    logs = [root / "log" / "munged.log", root / "log" / "slurmctld.log", root / "log" / "slurmd.log"]
    try:
        if not _munge_works():  # a munged of the machine's own is used as it is
            for folder in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
                Path(folder).mkdir(parents=True, exist_ok=True)
            started.append(subprocess.Popen([tool("munged"), "-F", "-f", f"--log-file={logs[0]}",
                                             f"--pid-file={root / 'munged.pid'}"], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.STDOUT))
            _wait("munged", _munge_works, 20, logs)
        started.append(subprocess.Popen([tool("slurmctld"), "-D", "-i", "-f", str(CONF)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen([tool("slurmd"), "-D", "-N", host, "-f", str(CONF)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        _wait("the node", _node_idle, 60, logs)
        yield
    finally:
        for process in reversed(started):
            process.terminate()
        for process in reversed(started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if saved is None:
            CONF.unlink(missing_ok=True)
        else:
            CONF.write_bytes(saved)
