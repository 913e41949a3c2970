# Evaluation: one job per (model, mitigation) loads the model once and scores the clean set and every quality.


rule evaluate_classification:
    input:
        reference=paths.reference("classification", "{model}"),
        clean=paths.manifest(CLS_DATASET, "val"),
        compressed=expand(paths.manifest(CLS_DATASET, "val-q{quality}"), quality=QUALITIES),
    output:
        metrics=paths.metrics("classification", "{model}", "none"),
    params:
        compressed=lambda w, input: " ".join(f"{q}={m}" for q, m in zip(QUALITIES, input.compressed)),
        used=lambda w: as_json(
            {
                "classification.dataset": CLS_DATASET,
                f"classification.models.{w.model}": used_model_config(CLS_MODELS[w.model]),
                "classification.eval_batch_size": CLS["eval_batch_size"],
                f"datasets.{CLS_DATASET}": config["datasets"][CLS_DATASET],
                "qualities": QUALITIES,
                "seed": config["seed"],
                "device": config["device"],
            }
        ),
        batch_size=CLS["eval_batch_size"],
        workers=CLS["eval_workers"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=2000,
    conda:
        ENV
    log:
        paths.log("evaluate", "classification-{model}-none"),
    benchmark:
        paths.benchmark("evaluate", "classification-{model}-none")
    message:
        "Evaluating {wildcards.model} (no mitigation) on clean and JPEG Q={QUALITIES} images"
    shell:
        "jpegstudy evaluate --model {wildcards.model} --reference {input.reference} --clean {input.clean}"
        " --compressed {params.compressed} --params {params.used:q} --rule evaluate_classification"
        " --batch-size {params.batch_size} --workers {params.workers} --threads {threads}"
        " --device {params.device} --out {output.metrics} > {log} 2>&1"
