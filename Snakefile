# jpegstudy: "Analyzing and Mitigating JPEG Compression Defects in Deep Learning" as a Snakemake workflow.
# The default config is the embedded study (CPU, minutes); README.md says how to run the rest.
from snakemake.utils import min_version, validate

min_version("9.0")


# A --configfile is a whole study and replaces config.yaml (snakemake would otherwise merge the two, mixing the
# embedded study's models into the user's); --config key=value still overrides single keys of config.yaml.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/mitigate.smk"
include: "rules/evaluate.smk"
include: "rules/codecs.smk"
include: "rules/appendix.smk"
include: "rules/report.smk"


# One process imports torch once and forks each job's `jpegstudy` (src/jpegstudy/jobserver.py: ~7 s saved a job on
# a 2-core CPU). JPEGSTUDY_JOB_SERVER=off runs every job in a process of its own, as without it. Not under a
# cluster executor: its jobs would reach the server through the inherited socket and run here, outside their
# allocation (on a one-node cluster that is the same machine).
from jpegstudy import jobserver


onstart:
    if workflow.local_exec:
        jobserver.start(Path(".snakemake/log/jpegstudy-job-server.log"))


onsuccess:
    jobserver.stop()


onerror:
    jobserver.stop()


rule all:
    input:
        REPORT_TARGETS,
    default_target: True
