"""A job server: one process that has imported torch and torchvision forks a child for each `jpegstudy` job.

Importing torch + torchvision takes ~7 s on the embedded study's 2-core machine (torchvision.ops pulls in
torch._dynamo), and the study runs ~200 jobs that each pay it: the largest single cost of a CPU run after training.
Snakemake starts one server for the run (Snakefile `onstart`); a job's `jpegstudy` command then hands its argv, working
folder, environment and standard streams (the file descriptors themselves, over a Unix socket) to the server, which
forks: the child starts with everything imported and runs the command exactly as `jpegstudy` would, writing to the
job's own log. The client waits, forwards SIGINT/SIGTERM/SIGHUP to the child, and exits with the child's status.

Nothing depends on it: with no server (variable unset, socket gone, a cluster node) the command runs in-process as
always. Each child is a fresh fork of a server that has run no job and drawn no random number, so a job's results are
the same either way (tests/test_jobserver.py). The server leaves when snakemake does (it watches its parent), and is
in snakemake's process group, so a signal to the group reaches it and every job forked from it; a child whose client
was killed (its socket closed) kills itself. Snakemake's benchmark files then time the client (the wall time is the
job's; its memory is not): the server's log has each job's peak RSS and CPU time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

SOCKET_ENV = "JPEGSTUDY_JOB_SERVER"
# Modules every job kind spends its start on; a job imports the rest of what it needs itself.
PRELOAD = ("torch", "torchvision", "torchvision.models.detection", "jpegstudy.cli", "jpegstudy.evaluate",
           "jpegstudy.throughput", "jpegstudy.train.ttac", "jpegstudy.tasks.classification",
           "jpegstudy.tasks.detection", "jpegstudy.tasks.segmentation", "jpegstudy.tasks.forensics",
           "jpegstudy.report.figures", "jpegstudy.report.tables")
_HEADER = struct.Struct("!I")
_STREAMS = 3  # stdin, stdout, stderr


def _send(conn: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    packet = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(conn, [packet], fds)
    else:
        conn.sendall(packet)


def _receive_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("job server connection closed")
        data += chunk
    return data


def _receive(conn: socket.socket, with_fds: bool = False) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, _STREAMS)
        head += _receive_exactly(conn, _HEADER.size - len(head))
    else:
        head = _receive_exactly(conn, _HEADER.size)
    (n,) = _HEADER.unpack(head)
    return json.loads(_receive_exactly(conn, n)), fds


# --- client: the `jpegstudy` command of a job --------------------------------------------------------------------

def run_via_server(argv: list[str]) -> int | None:
    """Run `jpegstudy argv` in a child of the job server and return its exit status; None when no server answers
    (the caller then runs the command itself)."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        _send(conn, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}, list(range(_STREAMS)))
        started, _ = _receive(conn)
    except (OSError, ConnectionError, ValueError):
        conn.close()
        return None  # no server, or one that is leaving: nothing ran yet
    child = started["pid"]

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        done, _ = _receive(conn)
    except (OSError, ConnectionError, ValueError):
        print(f"jpegstudy: the job server's child {child} ended without a status (killed?)", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return int(done["status"])


# --- server ------------------------------------------------------------------------------------------------------

def _exit_status(code) -> int:
    """What the interpreter makes of `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run_child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the job (its streams, folder, environment, argv), run it, report the status."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    preloaded = os.environ.get("LD_PRELOAD")  # what this process really runs on (cpu.allocator reads it)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop("LD_PRELOAD", None)
    if preloaded:
        os.environ["LD_PRELOAD"] = preloaded
    sys.argv = ["jpegstudy", *request["argv"]]
    tempfile.tempdir = None  # found again from the job's TMPDIR
    _send(conn, {"pid": os.getpid()})
    finishing = threading.Event()
    threading.Thread(target=_follow_client, args=(conn, finishing), daemon=True).start()
    status = 1
    try:
        from jpegstudy import cli

        cli.main(request["argv"])
        status = 0
    except SystemExit as e:
        status = _exit_status(e.code)
    except BaseException:  # as the interpreter would: the traceback on stderr, status 1
        import traceback

        traceback.print_exc()
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            try:
                finishing.set()
                _send(conn, {"status": status})
            finally:
                os._exit(status)


def _follow_client(conn: socket.socket, finishing: threading.Event) -> None:
    """The client sends nothing more: its end closing means it was killed (SIGKILL is not forwarded), and the job
    goes with it, as a job in its own process would."""
    try:
        conn.recv(1)
    except OSError:
        pass
    if not finishing.is_set():
        os.kill(os.getpid(), signal.SIGKILL)


def _reap(started: dict) -> None:
    """Collect finished children; log each one's status, wall time, peak RSS and CPU time (snakemake's benchmark
    files see only the waiting client)."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        number, name, t0 = started.pop(pid, (0, "?", time.monotonic()))
        print(f"{time.strftime('%H:%M:%S')} job {number} (pid {pid}) {name}: status {os.waitstatus_to_exitcode(status)}, "
              f"{time.monotonic() - t0:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB, "
              f"CPU {usage.ru_utime + usage.ru_stime:.1f} s", flush=True)


def serve(path: str, parent: int) -> None:
    """Import PRELOAD, then listen on `path`, a fork per job, until `parent` ends or SIGTERM."""
    import importlib

    # Before any op: no OpenMP pool may exist in a process that forks (GNU OpenMP's is not fork-safe); each job
    # sets its own thread count.
    import torch

    torch.set_num_threads(1)
    for name in PRELOAD:
        importlib.import_module(name)
    sys.stdout.flush()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}"
    listener.bind(staging)
    listener.listen(64)
    os.replace(staging, path)  # clients see the socket only once everything is imported

    def leave(_signum=None, _frame=None):
        try:
            os.unlink(path)
        except OSError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)  # Ctrl-C reaches the whole group: leave without a traceback or a stale socket
    listener.settimeout(1.0)
    served, started = 0, {}
    print(f"jpegstudy job server {os.getpid()}: listening on {path} (imported {', '.join(PRELOAD)})", flush=True)
    while True:
        if os.getppid() != parent:
            print("jpegstudy job server: snakemake ended; leaving", flush=True)
            leave()
        _reap(started)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        try:
            request, fds = _receive(conn, with_fds=True)
        except (OSError, ConnectionError, ValueError) as e:
            print(f"jpegstudy job server: a bad request ({e}); ignored", flush=True)
            conn.close()
            continue
        if len(fds) != _STREAMS:
            for fd in fds:
                os.close(fd)
            conn.close()
            continue
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                listener.close()
                _run_child(conn, request, fds)  # ends with os._exit
            finally:  # it failed before the job began (e.g. its folder is gone): never back into this loop
                import traceback

                traceback.print_exc()
                os._exit(1)
        served += 1
        name = f"jpegstudy {' '.join(request['argv'][:1])}"
        started[pid] = (served, name, time.monotonic())
        print(f"{time.strftime('%H:%M:%S')} job {served} (pid {pid}): {name}", flush=True)
        for fd in fds:
            os.close(fd)
        conn.close()


# --- snakemake's side: onstart / onsuccess / onerror ----------------------------------------------------------------

_started: list = []  # the server start() made in this (snakemake's) process


def start(log: Path) -> int | None:
    """Start a server for this snakemake process; its socket goes into os.environ (jobs inherit it). The pid, or
    None where it is switched off (JPEGSTUDY_JOB_SERVER=off) or already running."""
    import subprocess

    if os.environ.get(SOCKET_ENV) == "off" or _started:
        return None
    path = os.path.join(tempfile.gettempdir(), f"jpegstudy-{os.getpid()}.sock")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        server = subprocess.Popen([sys.executable, "-m", "jpegstudy.cli", "serve", "--socket", path,
                                   "--parent", str(os.getpid())], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT)  # snakemake's process group: a kill of it reaches the jobs
    os.environ[SOCKET_ENV] = path
    _started.append((server, path))
    return server.pid


def stop() -> None:
    """End the server `start` started (jobs are over: snakemake calls this from onsuccess/onerror)."""
    while _started:
        server, path = _started.pop()
        if os.environ.get(SOCKET_ENV) == path:
            del os.environ[SOCKET_ENV]
        server.terminate()
        try:
            server.wait(timeout=10)
        except Exception:  # noqa: BLE001 - leaving anyway; it also leaves by itself once snakemake has ended
            server.kill()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
