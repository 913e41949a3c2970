# Config checking and the small helpers every rule file uses. No study logic here: that lives in src/jpegstudy.
import json
import sys
from functools import partial

from jpegstudy import paths
from jpegstudy.config import ConfigError, check, wildcard_names

try:
    check(config, workflow.source_path("../config/schema.yaml"))
except ConfigError as e:
    # One line naming the key, instead of a traceback through the Snakefile.
    sys.exit(f"jpegstudy: {e}")
validate(config, "../config/schema.yaml")  # snakemake's validation: also fills in every default


as_json = partial(json.dumps, sort_keys=True)
ENV = "../envs/jpegstudy.yaml"

CLS = config["classification"]
CLS_DATASET = CLS["dataset"]
CLS_MODELS = CLS["models"]
QUALITIES = config["qualities"]
