# Report: tables and figures, made from metric rows alone (one rule per table or figure).
from jpegstudy.report import template

REPORT_MITIGATIONS = classification_mitigations(config)  # {model: [none, finetune, ...]}
REPORT_WANTED = set(CLS["mitigations"])
AC = CLS["ac_comparison"]
SUMMARY_QUALITY = min(QUALITIES)  # the paper's Figure 1 is at Q=10, the lowest quality it evaluates
# Every (model, mitigation) evaluated, models in config order; each table or figure reads the files of a subset.
REPORT_PAIRS = [(model, mitigation) for model, ms in REPORT_MITIGATIONS.items() for mitigation in ms]
TRANSFER_TARGETS = [model for model, m in REPORT_PAIRS if m.startswith("transfer-")]

ALL_METRICS = [paths.metrics("classification", model, m) for model, m in REPORT_PAIRS]
CLS_METRICS = [paths.metrics("classification", model, m) for model, m in REPORT_PAIRS if m == "none"]
BASE_METRICS = [
    paths.metrics("classification", model, m)
    for model, m in REPORT_PAIRS
    if m in ("none", "finetune", "offtheshelf", "ttac")
]
TRANSFER_METRICS = [
    paths.metrics("classification", model, m)
    for model, m in REPORT_PAIRS
    if model in TRANSFER_TARGETS and (m in ("none", "ttac") or m.startswith("transfer-"))
]
SUMMARY_METRICS = [
    paths.metrics("classification", model, m) for model, m in REPORT_PAIRS if m in ("none", "finetune", "ttac")
]
AC_METRICS = [
    paths.metrics("classification", model, m)
    for model, m in REPORT_PAIRS
    if model == AC["model"] and (m in ("none", "offtheshelf", "ttac") or m.split("-")[0] in AC["networks"])
]

# What `rule all` builds: each table or figure whose mitigations the config asks for.
REPORT_TARGETS = [
    paths.table("classification"),
    paths.table("classification_top5"),
    *expand(paths.figure("drop_classification", "{ext}"), ext=["pdf", "png"]),
]
if REPORT_WANTED & {"finetune", "offtheshelf", "ttac"}:
    REPORT_TARGETS += expand(paths.figure("mitigation_classification", "{ext}"), ext=["pdf", "png"])
if TRANSFER_TARGETS:
    REPORT_TARGETS += expand(paths.figure("transfer_classification", "{ext}"), ext=["pdf", "png"])
if {"finetune", "ttac"} <= REPORT_WANTED:
    REPORT_TARGETS += expand(paths.figure("summary_classification", "{ext}"), ext=["pdf", "png"])
if "ac_comparison" in REPORT_WANTED:
    REPORT_TARGETS.append(paths.table("ac_comparison"))


rule table_classification:
    input:
        metrics=ALL_METRICS,
        template=template("classification_table.tex.j2"),
    output:
        table=paths.table("classification"),
    conda:
        ENV
    log:
        paths.log("report", "table-classification"),
    message:
        "Writing the classification table (top-1, every model and mitigation)"
    shell:
        "jpegstudy table {input.metrics} --field top1 --out {output.table} > {log} 2>&1"


rule table_classification_top5:
    input:
        metrics=ALL_METRICS,
        template=template("classification_table.tex.j2"),
    output:
        table=paths.table("classification_top5"),
    conda:
        ENV
    log:
        paths.log("report", "table-classification_top5"),
    message:
        "Writing the classification table (top-5, every model and mitigation)"
    shell:
        "jpegstudy table {input.metrics} --field top5 --out {output.table} > {log} 2>&1"


rule table_ac_comparison:
    input:
        metrics=AC_METRICS,
        template=template("ac_comparison_table.tex.j2"),
    output:
        table=paths.table("ac_comparison"),
    params:
        table=as_json({"qualities": AC["qualities"]}),
    conda:
        ENV
    log:
        paths.log("report", "table-ac_comparison"),
    message:
        "Writing the artifact-correction comparison (Table 1) on {AC[model]}"
    shell:
        "jpegstudy table --kind ac-comparison {input.metrics} --params {params.table:q} --out {output.table}"
        " > {log} 2>&1"


rule figure_drop_classification:
    input:
        metrics=CLS_METRICS,
    output:
        pdf=paths.figure("drop_classification", "pdf"),
        png=paths.figure("drop_classification", "png"),
    params:
        figure=as_json(config["report"]["figure"]),
    conda:
        ENV
    log:
        paths.log("report", "figure-drop_classification"),
    message:
        "Plotting the drop in top-1 accuracy against JPEG quality (Figure 3)"
    shell:
        "jpegstudy figure {input.metrics} --params {params.figure:q} --out {output.pdf} {output.png} > {log} 2>&1"


rule figure_mitigation_classification:
    input:
        metrics=BASE_METRICS,
    output:
        pdf=paths.figure("mitigation_classification", "pdf"),
        png=paths.figure("mitigation_classification", "png"),
    params:
        figure=as_json(config["report"]["figure"]),
    conda:
        ENV
    log:
        paths.log("report", "figure-mitigation_classification"),
    message:
        "Plotting the drop in top-1 with each mitigation against JPEG quality (Figure 4)"
    shell:
        "jpegstudy figure --kind mitigation {input.metrics} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule figure_transfer_classification:
    input:
        metrics=TRANSFER_METRICS,
    output:
        pdf=paths.figure("transfer_classification", "pdf"),
        png=paths.figure("transfer_classification", "png"),
    params:
        figure=as_json(config["report"]["figure"]),
    conda:
        ENV
    log:
        paths.log("report", "figure-transfer_classification"),
    message:
        "Plotting each model's own TTAC corrector against those transferred from other models (Figure 7a)"
    shell:
        "jpegstudy figure --kind transfer {input.metrics} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule figure_summary_classification:
    input:
        metrics=SUMMARY_METRICS,
        throughput=expand(paths.throughput("classification", "{model}"), model=list(REPORT_MITIGATIONS)),
    output:
        pdf=paths.figure("summary_classification", "pdf"),
        png=paths.figure("summary_classification", "png"),
    params:
        figure=as_json({**config["report"]["figure"], "quality": SUMMARY_QUALITY}),
    conda:
        ENV
    log:
        paths.log("report", "figure-summary_classification"),
    message:
        "Plotting fine-tuning against TTAC at Q={SUMMARY_QUALITY} per model, sized by throughput (Figure 1)"
    shell:
        "jpegstudy figure --kind summary {input.metrics} --throughput {input.throughput}"
        " --params {params.figure:q} --out {output.pdf} {output.png} > {log} 2>&1"
