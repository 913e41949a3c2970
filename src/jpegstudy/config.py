"""Checking a study's config before any job runs: the schema (config/schema.yaml) plus what a schema cannot say
(a model name the zoo lacks, a dataset folder that does not exist). Every problem is one line naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import yaml

from jpegstudy.tasks.classification import ARCHITECTURES, is_torchvision_weights


class ConfigError(ValueError):
    pass


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def wildcard_names(mapping: dict, **where) -> str:
    """Names of config entries whose fields equal `where`, as a wildcard regex (one that never matches if none)."""
    names = [n for n, v in mapping.items() if all(v.get(k) == want for k, want in where.items())]
    return "|".join(re.escape(n) for n in names) or "(?!)"


def check(config: dict, schema_path: str | Path) -> None:
    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(f"config {_key(error.absolute_path)}: {error.message}")
    for name, ds in config.get("datasets", {}).items():
        for key in ("val", "train", "ground_truth"):
            if ds.get(key) and not Path(ds[key]).exists():
                raise ConfigError(f"config datasets.{name}.{key}: {ds[key]} does not exist")
    cls = config.get("classification", {})
    if cls.get("dataset") not in config.get("datasets", {}):
        raise ConfigError(f"config classification.dataset: {cls.get('dataset')!r} is not one of datasets "
                          f"({', '.join(config.get('datasets', {}))})")
    kind = config["datasets"][cls["dataset"]]["kind"]
    for name, model in cls.get("models", {}).items():
        arch = model.get("arch", name)
        if arch not in ARCHITECTURES:
            raise ConfigError(f"config classification.models.{name}: unknown model {arch!r}; known: "
                              f"{', '.join(sorted(ARCHITECTURES))}")
        weights = model.get("weights", "train")
        if weights == "train" and kind != "embedded" and not config["datasets"][cls["dataset"]].get("train"):
            raise ConfigError(f"config classification.models.{name}.weights: 'train' needs a training split "
                              f"(datasets.{cls['dataset']}.train)")
        if weights != "train" and not is_torchvision_weights(weights) and not Path(weights).is_file():
            raise ConfigError(f"config classification.models.{name}.weights: {weights} is neither 'train', a "
                              f"torchvision weights name nor an existing checkpoint file")
