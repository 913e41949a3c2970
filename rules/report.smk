# Report: tables and figures, made from metric rows alone.

CLS_METRICS = expand(paths.metrics("classification", "{model}", "none"), model=list(CLS_MODELS))


rule table_classification:
    input:
        metrics=CLS_METRICS,
    output:
        table=paths.table("classification"),
    conda:
        ENV
    log:
        paths.log("report", "table-classification"),
    message:
        "Writing the classification table"
    shell:
        "jpegstudy table {input.metrics} --out {output.table} > {log} 2>&1"


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
        "Plotting the drop in top-1 accuracy against JPEG quality"
    shell:
        "jpegstudy figure {input.metrics} --params {params.figure:q} --out {output.pdf} {output.png} > {log} 2>&1"
