"""The job server (jobserver.py): a `jpegstudy` command forked from it gives the same result, status and messages as
one run in a process of its own, and without a server the command runs as always."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jpegstudy import jobserver

BIN = Path(sys.executable).parent


def jpegstudy(args, env, cwd):
    return subprocess.run([str(BIN / "jpegstudy"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A server started as snakemake's onstart starts it (this process is its parent); its socket and log."""
    monkeypatch.delenv(jobserver.SOCKET_ENV, raising=False)
    log = tmp_path / "server.log"
    assert jobserver.start(log) is not None
    path = os.environ[jobserver.SOCKET_ENV]
    deadline = time.monotonic() + 120
    while not os.path.exists(path):  # it binds only once torch and the task modules are imported
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    yield path, log
    jobserver.stop()
    assert not os.path.exists(path)
    assert jobserver.SOCKET_ENV not in os.environ


def test_a_job_through_the_server_trains_the_same_weights(server, tmp_path):
    path, log = server
    with_server = {**os.environ, jobserver.SOCKET_ENV: path}
    alone = {**os.environ, jobserver.SOCKET_ENV: "off"}
    made = jpegstudy(["prepare-embedded", "--split", "train", "--per-class", "3", "--size", "32", "--seed", "0",
                      "--out", "train/manifest.json"], with_server, tmp_path)
    assert made.returncode == 0, made.stderr
    assert "30 images in 10 classes" in made.stdout  # the job's stdout reached the caller
    params = json.dumps({"epochs": 1, "batch_size": 8, "lr": 0.01, "weight_decay": 0.0, "seed": 0, "image_size": 32})
    outs = {}
    for name, env in (("served", with_server), ("alone", alone)):
        done = jpegstudy(["train-reference", "--arch", "resnet18", "--train", "train/manifest.json", "--params",
                          params, "--out", f"{name}.pt"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        outs[name] = torch.load(tmp_path / f"{name}.pt", map_location="cpu", weights_only=False)
    assert (tmp_path / "served.pt").read_bytes() == (tmp_path / "alone.pt").read_bytes()  # byte for byte
    served, alone_weights = outs["served"]["state_dict"], outs["alone"]["state_dict"]
    assert served.keys() == alone_weights.keys()
    assert all(torch.equal(served[k], alone_weights[k]) for k in served)
    lines = log.read_text()
    assert "jpegstudy prepare-embedded" in lines and "jpegstudy train-reference" in lines  # these two were forked
    assert lines.count("): jpegstudy") == 2  # and the one with the server switched off was not


def test_a_killed_command_takes_its_job_with_it(server, tmp_path):
    """SIGKILL cannot be forwarded: the child sees its client's socket close and ends too."""
    path, log = server
    env = {**os.environ, jobserver.SOCKET_ENV: path}
    assert jpegstudy(["prepare-embedded", "--split", "train", "--per-class", "3", "--size", "32", "--seed", "0",
                      "--out", "train/manifest.json"], env, tmp_path).returncode == 0
    params = json.dumps({"epochs": 500, "batch_size": 8, "lr": 0.01, "weight_decay": 0.0, "seed": 0,
                         "image_size": 32})
    client = subprocess.Popen([str(BIN / "jpegstudy"), "train-reference", "--arch", "resnet18", "--train",
                               "train/manifest.json", "--params", params, "--out", "long.pt"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not re.search(r"\(pid (\d+)\): jpegstudy train-reference", log.read_text()):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    child = int(re.search(r"\(pid (\d+)\): jpegstudy train-reference", log.read_text()).group(1))
    os.kill(child, 0)  # running
    client.kill()
    client.wait()
    deadline = time.monotonic() + 30
    while f"(pid {child}) jpegstudy train-reference: status -9" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert not (tmp_path / "long.pt").exists()


def test_an_error_keeps_its_status_and_message(server, tmp_path):
    path, _ = server
    done = jpegstudy(["audit", "missing.tex"], {**os.environ, jobserver.SOCKET_ENV: path}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "jpegstudy audit: error: missing.tex: no such file (nor a metric row id)"
    usage = jpegstudy(["evaluate"], {**os.environ, jobserver.SOCKET_ENV: path}, tmp_path)
    assert usage.returncode == 2 and "the following arguments are required" in usage.stderr


def test_without_a_server_the_command_runs_itself(tmp_path):
    done = jpegstudy(["audit", "missing.tex"], {**os.environ, jobserver.SOCKET_ENV: str(tmp_path / "gone.sock")},
                     tmp_path)
    assert done.returncode == 2
    assert "missing.tex: no such file" in done.stderr


def test_switched_off_no_server_starts(monkeypatch, tmp_path):
    monkeypatch.setenv(jobserver.SOCKET_ENV, "off")
    assert jobserver.start(tmp_path / "server.log") is None
    assert not (tmp_path / "server.log").exists()
