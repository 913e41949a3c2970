"""Every path of the study in one place (as showyourwork's paths module): rules and code never spell them out."""

from __future__ import annotations

RESULTS = "results"
REPORTS = "reports"


def manifest(dataset: str, split: str) -> str:
    return f"{RESULTS}/data/{dataset}/{split}/manifest.json"


def reference(task: str, model: str) -> str:
    return f"{RESULTS}/models/{task}/{model}/reference.pt"


def metrics(task: str, model: str, mitigation: str) -> str:
    return f"{RESULTS}/metrics/{task}/{model}/{mitigation}.json"


def log(stage: str, name: str) -> str:
    return f"{RESULTS}/logs/{stage}/{name}.log"


def benchmark(stage: str, name: str) -> str:
    return f"{RESULTS}/benchmarks/{stage}/{name}.tsv"


def table(name: str) -> str:
    return f"{REPORTS}/tables/{name}.tex"


def figure(name: str, ext: str) -> str:
    return f"{REPORTS}/figures/{name}.{ext}"
