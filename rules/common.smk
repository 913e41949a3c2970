# Config checking and the small helpers every rule file uses. No study logic here: that lives in src/jpegstudy.
import json
import re
import sys

from jpegstudy import paths
from jpegstudy.config import ConfigError, check

try:
    check(config, workflow.source_path("../config/schema.yaml"))
except ConfigError as e:
    # One line naming the key, instead of a traceback through the Snakefile.
    sys.exit(f"jpegstudy: {e}")
validate(config, "../config/schema.yaml")  # snakemake's validation: also fills in every default


def names_of(mapping, **where):
    """Names of config entries whose fields match `where`, as a wildcard regex (never-matching if none)."""
    names = [n for n, v in mapping.items() if all(v.get(k) == want for k, want in where.items())]
    return "|".join(re.escape(n) for n in names) or "(?!)"


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


CLS = config["classification"]
CLS_DATASET = CLS["dataset"]
CLS_MODELS = CLS["models"]
QUALITIES = config["qualities"]
