"""jpegstudy.cpu: the allocator a network command runs on, and the memory format of its models."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from jpegstudy import cpu

PROBE = ("from jpegstudy import cpu; cpu.preload_allocator(); "
         "print(cpu.allocator(), any('tcmalloc' in line for line in open('/proc/self/maps')))")
needs_tcmalloc = pytest.mark.skipif(cpu.tcmalloc_library() is None,
                                    reason="libtcmalloc-minimal4 not installed (scripts/system-packages installs it)")


def probe(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", cpu.ALLOCATOR_ENV)}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env},
                          check=True)


@needs_tcmalloc
def test_a_network_process_reexecutes_itself_with_tcmalloc_loaded():
    result = probe()
    assert result.stdout.split() == ["tcmalloc", "True"]
    assert result.stderr == ""


def test_system_keeps_glibc_and_does_not_reexecute():
    assert probe(**{cpu.ALLOCATOR_ENV: "system"}).stdout.split() == ["system", "False"]


def test_without_tcmalloc_it_says_so_once_and_tunes_glibc(monkeypatch, capsys):
    monkeypatch.setattr(cpu, "TCMALLOC", [])
    monkeypatch.delenv(cpu.ALLOCATOR_ENV, raising=False)
    cpu.preload_allocator()  # no re-exec: there is nothing to preload
    assert "tcmalloc not found" in capsys.readouterr().err
    assert cpu.allocator() == "glibc"


def test_channels_last_computes_what_nchw_computes():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    x = torch.rand(4, 3, 48, 48)
    with torch.no_grad():
        expected = model(x)
        fast = cpu.fast_layout(model, torch.device("cpu"))
        assert fast.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast(x), expected, atol=1e-4, rtol=1e-4)


@needs_tcmalloc
def test_every_metric_row_of_the_smoke_run_names_its_allocator(smoke_runs):
    rows = [row for path in (smoke_runs[0] / "results" / "metrics" / "classification").rglob("*.json")
            for row in json.loads(path.read_text())["rows"]]
    assert rows
    assert {row["provenance"]["device"].rsplit(", ", 1)[1] for row in rows} == {"tcmalloc"}
