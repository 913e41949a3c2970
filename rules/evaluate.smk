# Evaluation: one job per (model, mitigation) loads the model once and scores the clean set and every quality.

rule evaluate:
    input:
        unpack(lambda w: dag.evaluation_input(config, w)),
    output:
        metrics=paths.metrics("{task}", "{model}", "{mitigation}"),
        predictions=directory(paths.predictions("{task}", "{model}", "{mitigation}")),
    wildcard_constraints:
        task=TASK_NAMES,
        mitigation=MITIGATION_NAMES,
    params:
        compressed=lambda w, input: " ".join(f"{q}={m}" for q, m in zip(QUALITIES, input.compressed)),
        correctors=lambda w: dag.corrector_args(config, w),
        proposals=lambda w: dag.proposals_option(config, w.task, w.model, "val"),
        used=lambda w: dag.evaluation_config(config, w),
        batch_size=lambda w: config[w.task]["eval_batch_size"],
        workers=lambda w: config[w.task]["eval_workers"],
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "evaluate"),
    conda:
        ENV
    log:
        paths.log("evaluate", "{task}-{model}-{mitigation}"),
    benchmark:
        paths.benchmark("evaluate", "{task}-{model}-{mitigation}")
    message:
        "Evaluating the {wildcards.task} model {wildcards.model} ({wildcards.mitigation}) on clean and JPEG"
        " Q={QUALITIES} images"
    shell:
        "jpegstudy evaluate --task {wildcards.task} --model {wildcards.model} --mitigation {wildcards.mitigation}"
        " --reference {input.reference} {params.correctors} --clean {input.clean}"
        " --compressed {params.compressed} --params {params.used:q} --rule evaluate"
        " --batch-size {params.batch_size} --workers {params.workers} --threads {threads}"
        " --device {params.device} {params.proposals} --out {output.metrics} --predictions {output.predictions}"
        " > {log} 2>&1"


rule throughput:
    resources:
        **rule_resources(config, "throughput"),
    input:
        reference=paths.reference("{task}", "{model}"),
        correctors=list(dag.throughput_correctors(config).values()),
    output:
        metrics=paths.throughput("{task}", "{model}"),
    wildcard_constraints:
        task=TASK_NAMES,
    params:
        correctors=" ".join(f"{name}={path}" for name, path in dag.throughput_correctors(config).items()),
        used=lambda w: as_json({**config[w.task]["throughput"], "seed": config["seed"], "threads": config["threads"]}),
        device=config["device"],
    # Like every job, `threads` cores: other jobs may run beside it on other cores (shared memory bandwidth makes
    # its figures a little pessimistic); `snakemake --cores 1 <target>` measures it alone.
    threads: config["threads"]
    conda:
        ENV
    log:
        paths.log("evaluate", "throughput-{task}-{model}"),
    benchmark:
        paths.benchmark("evaluate", "throughput-{task}-{model}")
    message:
        "Measuring training and inference throughput of the {wildcards.task} model {wildcards.model}, alone and with"
        " each corrector"
    shell:
        "jpegstudy throughput --task {wildcards.task} --model {wildcards.model} --reference {input.reference}"
        " --corrector {params.correctors} --params {params.used:q} --rule throughput_{wildcards.task}"
        " --threads {threads} --device {params.device} --out {output.metrics} > {log} 2>&1"
