"""scripts/system-packages: the check that stops `make study`/`make test` before any job runs."""

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import REPO

SCRIPT = REPO / "scripts" / "system-packages"
# Every command the script looks for, besides latexmk.
TOOLS = ["pdflatex", "kpsewhich", "cjpeg", "djpeg", "pdfinfo", "pdftotext", "chromium"]


def run(path_dir, *args):
    return subprocess.run([shutil.which("bash"), str(SCRIPT), *args], capture_output=True, text=True,
                          env={"PATH": str(path_dir), "PYTHON": sys.executable, "HOME": os.environ.get("HOME", "/")})


def path_without(tmp_path, left_out: str):
    """A folder to serve as PATH: links to every tool the script looks for that this machine has, but one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS + ["latexmk"]:
        found = shutil.which(tool)
        if tool != left_out and found:
            (folder / tool).symlink_to(found)
    return folder


def test_a_path_without_latexmk_gives_one_line_and_exit_2(tmp_path):
    result = run(path_without(tmp_path, "latexmk"), "--check", "study")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jpegstudy: missing system packages for 'study': ")
    assert "latexmk" in lines[0].split("; install them with: ")[0]
    assert "install them with: sudo apt-get install " in lines[0]


def test_check_passes_where_everything_is_installed(tmp_path):
    if not all(shutil.which(t) for t in TOOLS + ["latexmk"]):
        pytest.skip("this machine lacks some of the tools (scripts/system-packages installs them)")
    result = run(path_without(tmp_path, ""), "--check", "test")
    assert (result.returncode, result.stderr) == (0, "")


def test_an_unknown_purpose_is_refused(tmp_path):
    result = run(tmp_path, "--check", "paper")
    assert result.returncode == 64
    assert "usage:" in result.stderr
