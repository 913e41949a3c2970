# Config checking and the small helpers every rule file uses. No study logic here: that lives in src/jpegstudy.
import json
import shlex
import sys
from functools import partial

from jpegstudy import dag, paths
from jpegstudy.config import (
    ConfigError,
    check_schema,
    check_semantics,
    checkpoint_file,
    classification_mitigations,
    ground_truth_files,
    mitigation_config,
    mitigation_inputs,
    train_dataset,
    used_model_config,
    wildcard_names,
)

try:
    check_schema(config, workflow.source_path("../config/schema.yaml"))
    validate(config, "../config/schema.yaml")  # snakemake's validation: also fills in every default
    check_semantics(config)
except ConfigError as e:
    # One line naming the key, instead of a traceback through the Snakefile.
    sys.exit(f"jpegstudy: {e}")


as_json = partial(json.dumps, sort_keys=True)

ENV = "../envs/jpegstudy.yaml"

CLS = config["classification"]
CLS_DATASET = CLS["dataset"]
CLS_MODELS = CLS["models"]
QUALITIES = config["qualities"]
MITIGATIONS = classification_mitigations(config)
