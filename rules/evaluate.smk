# Evaluation: one job per (model, mitigation) loads the model once and scores the clean set and every quality.

MITIGATIONS = classification_mitigations(config)


def evaluation_input(w):
    needs = mitigation_inputs(config, w.model, w.mitigation)
    return {
        "reference": needs["reference"],
        "correctors": list(needs["correctors"].values()),
        "clean": paths.manifest(CLS_DATASET, "val"),
        "compressed": expand(paths.manifest(CLS_DATASET, "val-q{quality}"), quality=QUALITIES),
    }


def corrector_args(w):
    correctors = mitigation_inputs(config, w.model, w.mitigation)["correctors"]
    return " ".join(path if quality is None else f"{quality}={path}" for quality, path in correctors.items())


rule evaluate_classification:
    input:
        unpack(evaluation_input),
    output:
        metrics=paths.metrics("classification", "{model}", "{mitigation}"),
    wildcard_constraints:
        mitigation="|".join(sorted({m for ms in MITIGATIONS.values() for m in ms})),
    params:
        compressed=lambda w, input: " ".join(f"{q}={m}" for q, m in zip(QUALITIES, input.compressed)),
        correctors=lambda w: f"--corrector {corrector_args(w)}" if corrector_args(w) else "",
        used=lambda w: as_json(
            {
                "classification.dataset": CLS_DATASET,
                f"classification.models.{w.model}": used_model_config(CLS_MODELS[w.model]),
                "classification.eval_batch_size": CLS["eval_batch_size"],
                f"datasets.{CLS_DATASET}": config["datasets"][CLS_DATASET],
                "qualities": QUALITIES,
                "seed": config["seed"],
                "device": config["device"],
                **mitigation_config(config, w.mitigation),
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
        paths.log("evaluate", "classification-{model}-{mitigation}"),
    benchmark:
        paths.benchmark("evaluate", "classification-{model}-{mitigation}")
    message:
        "Evaluating {wildcards.model} ({wildcards.mitigation}) on clean and JPEG Q={QUALITIES} images"
    shell:
        "jpegstudy evaluate --model {wildcards.model} --mitigation {wildcards.mitigation}"
        " --reference {input.reference} {params.correctors} --clean {input.clean}"
        " --compressed {params.compressed} --params {params.used:q} --rule evaluate_classification"
        " --batch-size {params.batch_size} --workers {params.workers} --threads {threads}"
        " --device {params.device} --out {output.metrics} > {log} 2>&1"


def throughput_correctors():
    """One corrector file per network in the study: what is timed is the network, not its weights."""
    wanted = set(CLS["mitigations"])
    out = {}
    if wanted & {"offtheshelf", "ttac", "transfer"}:
        out["qgac"] = paths.offtheshelf("qgac")
    if "ac_comparison" in wanted:
        quality = CLS["ac_comparison"]["qualities"][0]
        out.update({net: paths.offtheshelf(net, quality) for net in CLS["ac_comparison"]["networks"]})
    return out


rule throughput_classification:
    input:
        reference=paths.reference("classification", "{model}"),
        correctors=list(throughput_correctors().values()),
    output:
        metrics=paths.throughput("classification", "{model}"),
    params:
        correctors=" ".join(f"{name}={path}" for name, path in throughput_correctors().items()),
        used=as_json({**CLS["throughput"], "seed": config["seed"], "threads": config["threads"]}),
        threads=config["threads"],
        device=config["device"],
    # All the cores, so no other job runs beside it and skews the timing; torch itself uses `threads` of them,
    # as every training and evaluation job does.
    threads: workflow.cores
    conda:
        ENV
    log:
        paths.log("evaluate", "throughput-classification-{model}"),
    benchmark:
        paths.benchmark("evaluate", "throughput-classification-{model}")
    message:
        "Measuring training and inference throughput of {wildcards.model}, alone and with each corrector"
    shell:
        "jpegstudy throughput --model {wildcards.model} --reference {input.reference}"
        " --corrector {params.correctors} --params {params.used:q} --rule throughput_classification"
        " --threads {params.threads} --device {params.device} --out {output.metrics} > {log} 2>&1"
