# Config checking and the small helpers every rule file uses. No study logic here: that lives in src/jpegstudy.
import json
import shlex
import sys
from functools import partial

from jpegstudy import codec_study, dag, paths
from jpegstudy.resources import rule_resources
from jpegstudy.config import (
    ConfigError,
    check_schema,
    check_semantics,
    checkpoint_file,
    ground_truth_files,
    study_mitigations,
    study_tasks,
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
# The {task} and {mitigation} wildcards of the rules every task shares (evaluate, train_ttac, finetune).
TASK_NAMES = "|".join(study_tasks(config))
MITIGATION_NAMES = "|".join(sorted({m for t in study_tasks(config) for ms in study_mitigations(config, t).values()
                                     for m in ms}))
MULTIHEAD_GROUPS = wildcard_names(config["multihead"]["groups"])
