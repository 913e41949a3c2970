# make study: fresh clone -> .venv -> the whole embedded study.   make test: what CI runs (.ci/run).
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
BIN := $(VENV)/bin
MIT_SEMSEG := mit-semseg==1.0.0
COMPRESSAI := compressai==1.2.8
# Rules call the `jpegstudy` command, so the venv's bin comes first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: study test test-slurm install clean packages-study packages-test packages-slurm

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	# CSAIL's mit-semseg without its requirements: its models need none beyond ours, and its opencv-python would
	# overwrite opencv-python-headless's cv2 with a build that needs libGL (segmentation imports mit_semseg.models).
	$(BIN)/pip install --quiet --no-deps $(MIT_SEMSEG)
	# CompressAI (the codec study's learned codec) without its requirements: it pins numpy<2; pyproject.toml has
	# the ones its models import (einops, pytorch-msssim, torch-geometric).
	$(BIN)/pip install --quiet --no-deps $(COMPRESSAI)
	touch $@

# Before anything runs: the system packages (TeX, latexmk, tcmalloc, ...) installed, or one line saying which.
packages-study:
	scripts/system-packages study
packages-test:
	scripts/system-packages test
packages-slurm:
	scripts/system-packages slurm

study: packages-study install
	$(BIN)/snakemake --cores $(CORES)

test: packages-test install
	$(BIN)/snakemake --lint
	$(BIN)/pytest

# The smoke study through a one-node Slurm on this machine (tests/test_slurm.py; slow, root): .ci/run runs it too.
test-slurm: packages-test packages-slurm install
	$(BIN)/pytest -m slow tests/test_slurm.py

clean:
	rm -rf results reports .snakemake
