# Report: tables and figures, made from metric rows alone (one rule per table or figure), and the study PDF.
# PNG figures are flagged for snakemake's own report (`snakemake --report reports/report.html`).
from pathlib import Path

from jpegstudy.report import template


report: "captions/workflow.rst"


REPORT_MITIGATIONS = study_mitigations(config)  # {model: [none, finetune, ...]}
REPORT_WANTED = set(CLS["mitigations"])
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
THROUGHPUT = expand(paths.throughput("classification", "{model}"), model=list(REPORT_MITIGATIONS))
# Appendix E's table and figure: every task's models.
ALL_THROUGHPUT = THROUGHPUT + [
    paths.throughput(task, m) for task in ("detection", "segmentation", "forensics")
    for m in config.get(task, {}).get("models", {})
]
# Plotting options; the figures with drops also get the bootstrap settings of their bands.
FIGURE = as_json(config["report"]["figure"])
FIGURE_WITH_BANDS = as_json(
    {**config["report"]["figure"], "confidence": {**config["confidence"], "seed": config["seed"]}}
)
# Table 1 (every task comparing correctors) and Table 5 (every model with a transferred or multihead corrector)
AC_METRICS = dag.ac_comparison_metrics(config)
BORROWED_METRICS = dag.borrowed_metrics(config)

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
if BORROWED_METRICS:
    REPORT_TARGETS.append(paths.table("transfer"))
if {"finetune", "ttac"} <= REPORT_WANTED:
    REPORT_TARGETS += expand(paths.figure("summary_classification", "{ext}"), ext=["pdf", "png"])
if AC_METRICS:
    REPORT_TARGETS.append(paths.table("ac_comparison"))
TASK_TABLES = dag.task_tables(config)
REPORT_TARGETS += [paths.table(name) for name in TASK_TABLES]
TASK_FIGURES = dag.task_figures(config)
REPORT_TARGETS += [paths.figure(name, ext) for name in TASK_FIGURES for ext in ("pdf", "png")]
ACROSS_FIGURES = dag.across_figures(config)
REPORT_TARGETS += [paths.figure(name, ext) for name in ACROSS_FIGURES for ext in ("pdf", "png")]
REPORT_TARGETS += [paths.table("findings"), paths.table("reference"), paths.table("throughput")]
REFERENCE_TASKS = [task for task in ("detection", "segmentation", "forensics") if task in config]
REPORT_TARGETS += [paths.table(f"reference_{task}") for task in REFERENCE_TASKS]
REPORT_TARGETS += expand(paths.figure("throughput_classification", "{ext}"), ext=["pdf", "png"])
REPORT_TARGETS += expand(paths.figure("model_classification_{model}", "{ext}"), model=list(CLS_MODELS),
                         ext=["pdf", "png"])
# Appendix D.1 of the other tasks: detection's (box mAP), segmentation's (mIoU) and forensics' (accuracy) per-model
# plots, (task, model)
MODEL_FIGURES = [
    (task, model)
    for task in ("detection", "segmentation", "forensics")
    for model in config.get(task, {}).get("models", {})
]
REPORT_TARGETS += [
    paths.figure(f"model_{task}_{model}", ext) for task, model in MODEL_FIGURES for ext in ("pdf", "png")
]
if "forensics" in config and config["datasets"][config["forensics"]["dataset"]]["kind"] == "embedded_forensics":
    REPORT_TARGETS += [paths.figure("forensics_spectrum", ext) for ext in ("pdf", "png")]

# The codec study (rules/codecs.smk): metric against bits per pixel per task, and the bitrate table.
CODEC_FIGURES = codec_study.report_figures(config)
REPORT_TARGETS += [paths.figure(name, ext) for name in CODEC_FIGURES for ext in ("pdf", "png")]
if CODEC_FIGURES:
    REPORT_TARGETS.append(paths.table("codecs"))

# What the study PDF includes, by place ("kind:name"): every table and the PDF of every figure above.
STUDY_PIECES = {
    f"table:{Path(t).stem}": t for t in REPORT_TARGETS if t.endswith(".tex")
} | {
    f"figure:{Path(f).stem.removesuffix('_classification')}": f
    for f in REPORT_TARGETS
    if f.endswith(".pdf") and not Path(f).stem.startswith(("model_classification_", "model_detection_",
                                                           "model_segmentation_", "model_forensics_"))
} | {
    f"model:{model}": paths.figure(f"model_classification_{model}", "pdf") for model in CLS_MODELS
} | {
    f"model:{task}:{model}": paths.figure(f"model_{task}_{model}", "pdf") for task, model in MODEL_FIGURES
} | {
    f"gradcam:{model}": path for model, path in APPENDIX_GRADCAM.items()
} | {
    f"qualitative:{model}": path for model, path in APPENDIX_QUALITATIVE.items()
} | {
    f"qualitative:{model}": path for model, path in APPENDIX_QUALITATIVE_DETECTION.items()
} | {
    f"qualitative:segmentation:{model}": path for model, path in APPENDIX_QUALITATIVE_SEGMENTATION.items()
} | TIDE_PIECES | {
    f"example:{task}": path for task, path in dag.example_pieces(
        config, APPENDIX_QUALITATIVE_DETECTION, APPENDIX_QUALITATIVE_SEGMENTATION).items()
}
REPORT_TARGETS += [*APPENDIX_TARGETS, paths.study_pdf()]



rule table_classification:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=ALL_METRICS,
        template=template("classification_table.tex.j2"),
    output:
        table=paths.table("classification"),
        html=dag.table_page("classification", "classification_table"),
    params:
        table=as_json({"intervals": config["report"]["intervals"]}),
    conda:
        ENV
    log:
        paths.log("report", "table-classification"),
    message:
        "Writing the classification table (top-1, every model and mitigation)"
    shell:
        "jpegstudy table {input.metrics} --field top1 --params {params.table:q} --out {output.table}"
        " --html {output.html} > {log} 2>&1"


rule table_classification_top5:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=ALL_METRICS,
        template=template("classification_table.tex.j2"),
    output:
        table=paths.table("classification_top5"),
        html=dag.table_page("classification_top5", "classification_table"),
    params:
        table=as_json({"intervals": config["report"]["intervals"]}),
    conda:
        ENV
    log:
        paths.log("report", "table-classification_top5"),
    message:
        "Writing the classification table (top-5, every model and mitigation)"
    shell:
        "jpegstudy table {input.metrics} --field top5 --params {params.table:q} --out {output.table}"
        " --html {output.html} > {log} 2>&1"


rule table_task:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=lambda w: TASK_TABLES[w.name][1],
        template=template("classification_table.tex.j2"),
    output:
        table=paths.table("{name}"),
        html=dag.table_page("{name}", "task_table"),
    wildcard_constraints:
        name="|".join(TASK_TABLES) or "(?!)",
    params:
        field=lambda w: TASK_TABLES[w.name][0],
        table=as_json({"intervals": config["report"]["intervals"]}),
    conda:
        ENV
    log:
        paths.log("report", "table-{name}"),
    message:
        "Writing the {wildcards.name} table ({params.field}, every model and mitigation)"
    shell:
        "jpegstudy table {input.metrics} --field {params.field} --params {params.table:q} --out {output.table}"
        " --html {output.html} > {log} 2>&1"


rule table_ac_comparison:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=AC_METRICS,
        template=template("ac_comparison_table.tex.j2"),
    output:
        table=paths.table("ac_comparison"),
        html=dag.table_page("ac_comparison", "ac_comparison"),
    conda:
        ENV
    log:
        paths.log("report", "table-ac_comparison"),
    message:
        "Writing the artifact-correction comparison (Table 1): each task's AC-comparison model"
    shell:
        "jpegstudy table --kind ac-comparison {input.metrics} --out {output.table}"
        " --html {output.html} > {log} 2>&1"


rule table_transfer:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=BORROWED_METRICS,
        template=template("transfer_table.tex.j2"),
    output:
        table=paths.table("transfer"),
        html=dag.table_page("transfer", "transfer_table"),
    conda:
        ENV
    log:
        paths.log("report", "table-transfer"),
    message:
        "Writing the transfer table (own against transferred and multihead TTAC correctors, Table 5)"
    shell:
        "jpegstudy table --kind transfer {input.metrics} --out {output.table}"
        " --html {output.html} > {log} 2>&1"


rule table_reference:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=CLS_METRICS,
        template=template("reference_table.tex.j2"),
    output:
        table=paths.table("reference"),
        html=dag.table_page("reference", "reference_classification"),
    conda:
        ENV
    log:
        paths.log("report", "table-reference"),
    message:
        "Writing the reference table (clean results beside torchvision's documented ones, appendix D.3)"
    shell:
        "jpegstudy table --kind reference {input.metrics} --out {output.table}"
        " --html {output.html} > {log} 2>&1"


# The reference tables of the other tasks (appendix D.3): clean metrics beside the documented ones, where they are.
rule table_reference_task:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=lambda w: dag.task_metrics(config, w.task, mitigations=("none",)),
        template=template("reference_table.tex.j2"),
    output:
        table=paths.table("reference_{task}"),
        html=dag.table_page("reference_{task}", "reference_task"),
    wildcard_constraints:
        task="|".join(REFERENCE_TASKS) or "(?!)",
    conda:
        ENV
    log:
        paths.log("report", "table-reference_{task}"),
    message:
        "Writing the {wildcards.task} models' reference table (their clean metrics, beside documented ones)"
    shell:
        "jpegstudy table --kind reference {input.metrics} --out {output.table} --html {output.html} > {log} 2>&1"


rule table_throughput:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        throughput=ALL_THROUGHPUT,
        template=template("throughput_table.tex.j2"),
    output:
        table=paths.table("throughput"),
        html=dag.table_page("throughput", "throughput_table"),
    conda:
        ENV
    log:
        paths.log("report", "table-throughput"),
    message:
        "Writing the throughput table (appendix E)"
    shell:
        "jpegstudy table --kind throughput {input.throughput} --out {output.table}"
        " --html {output.html} > {log} 2>&1"


rule figure_drop_classification:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=CLS_METRICS,
    output:
        pdf=paths.figure("drop_classification", "pdf"),
        png=dag.figure_png("drop_classification", "drop_classification", "Figures"),
    params:
        figure=FIGURE_WITH_BANDS,
    conda:
        ENV
    log:
        paths.log("report", "figure-drop_classification"),
    message:
        "Plotting the drop in top-1 accuracy against JPEG quality (Figure 3)"
    shell:
        "jpegstudy figure {input.metrics} --params {params.figure:q} --out {output.pdf} {output.png} > {log} 2>&1"


rule figure_task:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=lambda w: TASK_FIGURES[w.name][2],
    output:
        pdf=paths.figure("{name}", "pdf"),
        png=dag.figure_png("{name}", "task_figure", "Figures"),
    wildcard_constraints:
        name="|".join(TASK_FIGURES) or "(?!)",
    params:
        kind=lambda w: TASK_FIGURES[w.name][0],
        figure=lambda w: as_json(
            {
                **config["report"]["figure"],
                "field": TASK_FIGURES[w.name][1],
                "confidence": {**config["confidence"], "seed": config["seed"]},
            }
        ),
    conda:
        ENV
    log:
        paths.log("report", "figure-{name}"),
    message:
        "Plotting {wildcards.name} against JPEG quality (Figures 3, 4, 6 and 7)"
    shell:
        "jpegstudy figure --kind {params.kind} {input.metrics} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


# The main-body figures across tasks: Figures 3, 4 and 8 (Figure 1 has its throughput too, below).
rule figure_across:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=lambda w: ACROSS_FIGURES[w.name][1],
    output:
        pdf=paths.figure("{name}", "pdf"),
        png=dag.figure_png("{name}", "across_figure", "Figures across tasks"),
    wildcard_constraints:
        name="|".join(n for n in ACROSS_FIGURES if n != "summary_tasks") or "(?!)",
    params:
        kind=lambda w: ACROSS_FIGURES[w.name][0],
        figure=FIGURE_WITH_BANDS,
    conda:
        ENV
    log:
        paths.log("report", "figure-{name}"),
    message:
        "Plotting {wildcards.name}: a panel per task (Figures 3 and 4) or per multihead member (Figure 8)"
    shell:
        "jpegstudy figure --kind {params.kind} {input.metrics} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule figure_summary_tasks:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=ACROSS_FIGURES.get("summary_tasks", ("", []))[1],
        throughput=ALL_THROUGHPUT,
    output:
        pdf=paths.figure("summary_tasks", "pdf"),
        png=dag.figure_png("summary_tasks", "summary_tasks", "Figures across tasks"),
    params:
        figure=as_json({**config["report"]["figure"], "quality": SUMMARY_QUALITY}),
    conda:
        ENV
    log:
        paths.log("report", "figure-summary_tasks"),
    message:
        "Plotting fine-tuning against TTAC at Q={SUMMARY_QUALITY} for every model of every task, sized by"
        " throughput (Figure 1)"
    shell:
        "jpegstudy figure --kind summary-tasks {input.metrics} --throughput {input.throughput}"
        " --params {params.figure:q} --out {output.pdf} {output.png} > {log} 2>&1"


rule findings:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=dag.findings_metrics(config),
        template=template("findings.tex.j2"),
    output:
        page=paths.table("findings"),
    conda:
        ENV
    log:
        paths.log("report", "findings"),
    message:
        "Writing the findings page: the paper's three claims, each against the study's own numbers"
    shell:
        "jpegstudy findings {input.metrics} --out {output.page} > {log} 2>&1"


rule figure_mitigation_classification:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=BASE_METRICS,
    output:
        pdf=paths.figure("mitigation_classification", "pdf"),
        png=dag.figure_png("mitigation_classification", "mitigation_classification", "Figures"),
    params:
        figure=FIGURE,
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
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=TRANSFER_METRICS,
    output:
        pdf=paths.figure("transfer_classification", "pdf"),
        png=dag.figure_png("transfer_classification", "transfer_classification", "Figures"),
    params:
        figure=FIGURE_WITH_BANDS,
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
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=SUMMARY_METRICS,
        throughput=THROUGHPUT,
    output:
        pdf=paths.figure("summary_classification", "pdf"),
        png=dag.figure_png("summary_classification", "summary_classification", "Figures"),
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


rule figure_model_classification:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=lambda w: [paths.metrics("classification", w.model, m) for m in REPORT_MITIGATIONS[w.model]],
    output:
        pdf=paths.figure("model_classification_{model}", "pdf"),
        png=dag.figure_png("model_classification_{model}", "model_classification", "Appendix D.1: per-model plots",
                       "{model}"),
    wildcard_constraints:
        model="|".join(CLS_MODELS),
    params:
        figure=FIGURE_WITH_BANDS,
    conda:
        ENV
    log:
        paths.log("report", "figure-model_classification-{model}"),
    message:
        "Plotting {wildcards.model}'s accuracy against JPEG quality with each mitigation (appendix D.1)"
    shell:
        "jpegstudy figure --kind model {input.metrics} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule figure_model_task:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=lambda w: dag.task_metrics(config, w.task, models=(w.model,)),
    output:
        pdf=paths.figure("model_{task}_{model}", "pdf"),
        png=dag.figure_png("model_{task}_{model}", "model_classification", "Appendix D.1: per-model plots",
                           "{model}"),
    wildcard_constraints:
        task="|".join(sorted({task for task, _ in MODEL_FIGURES})) or "(?!)",
        model="|".join(model for _, model in MODEL_FIGURES) or "(?!)",
    params:
        figure=lambda w: as_json(
            {
                **config["report"]["figure"],
                "field": dag.TASK_FIELDS[w.task],
                "confidence": {**config["confidence"], "seed": config["seed"]},
            }
        ),
    conda:
        ENV
    log:
        paths.log("report", "figure-model_{task}-{model}"),
    message:
        "Plotting the {wildcards.task} model {wildcards.model}'s metric against JPEG quality with each mitigation"
        " (appendix D.1)"
    shell:
        "jpegstudy figure --kind model {input.metrics} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule figure_forensics_spectrum:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        manifest=lambda w: paths.manifest(config["forensics"]["dataset"], "val"),
    output:
        pdf=paths.figure("forensics_spectrum", "pdf"),
        png=dag.figure_png("forensics_spectrum", "forensics_spectrum", "Forensics: the fakes' traces"),
    params:
        figure=FIGURE,
    conda:
        ENV
    log:
        paths.log("report", "figure-forensics_spectrum"),
    message:
        "Plotting real and fake validation images and the mean spectra of their residuals (the generator's traces)"
    shell:
        "jpegstudy spectrum --manifest {input.manifest} --params {params.figure:q} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule figure_throughput_classification:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        throughput=ALL_THROUGHPUT,
    output:
        pdf=paths.figure("throughput_classification", "pdf"),
        png=dag.figure_png("throughput_classification", "throughput_classification", "Appendix E: throughput"),
    params:
        figure=FIGURE,
    conda:
        ENV
    log:
        paths.log("report", "figure-throughput_classification"),
    message:
        "Plotting images/s of each model alone and with each corrector (Figure 19)"
    shell:
        "jpegstudy figure --kind throughput {input.throughput} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule study_pdf:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        pieces=list(STUDY_PIECES.values()),
        metrics=ALL_METRICS + ALL_THROUGHPUT + dag.task_metrics(config, "detection")
        + dag.task_metrics(config, "segmentation") + dag.task_metrics(config, "forensics")
        + codec_study.wanted(config),
        template=template("study.tex.j2"),
    output:
        pdf=report(paths.study_pdf(), caption="captions/study_pdf.rst", category="Study PDF"),
        tex=paths.report_file("study.tex"),
    params:
        pieces=" ".join(f"{key}={path}" for key, path in STUDY_PIECES.items()),
    conda:
        ENV
    log:
        paths.log("report", "study-pdf"),
    message:
        "Typesetting the study PDF (latexmk): every table, figure and appendix, each number linked to its record"
    shell:
        "jpegstudy study --pieces {params.pieces} --metrics {input.metrics} --tex {output.tex} --out {output.pdf}"
        " > {log} 2>&1"


rule figure_rate:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=lambda w: CODEC_FIGURES[w.name][2],
    output:
        pdf=paths.figure("{name}", "pdf"),
        png=dag.figure_png("{name}", "rate_figure", "Figures"),
    wildcard_constraints:
        name="|".join(CODEC_FIGURES) or "(?!)",
    params:
        kind=lambda w: CODEC_FIGURES[w.name][0],
        figure=as_json({**config["report"]["figure"], "confidence": {**config["confidence"], "seed": config["seed"]}}),
    conda:
        ENV
    log:
        paths.log("report", "figure-{name}"),
    message:
        "Plotting {wildcards.name}: the metric against bits per pixel, a curve per codec (Beyond JPEG)"
    shell:
        "jpegstudy rates --kind {params.kind} {input.metrics} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule table_codecs:
    group:
        "report"
    resources:
        **rule_resources(config, "report"),
    input:
        metrics=codec_study.table_files(config),
    output:
        table=paths.table("codecs"),
    params:
        table=as_json({"within": config["codecs"]["within"]}),
    conda:
        ENV
    log:
        paths.log("report", "table-codecs"),
    message:
        "The bits per pixel each codec needs to stay within {params.table} of the clean metric, and its BD-rate"
        " against JPEG"
    shell:
        "jpegstudy rates --kind table {input.metrics} --params {params.table:q} --out {output.table} > {log} 2>&1"
