# The codec study: other codecs beside JPEG on a bits-per-pixel axis (src/jpegstudy/codec_study.py says what each
# rule needs). JPEG's sets and models are the study's own; these rules add every other codec's.
CODEC_FORMATS = codec_study.formats(config)
CODEC_NAMES = "|".join(CODEC_FORMATS) or "(?!)"  # the other codecs
CODEC_OR_JPEG = codec_study.wildcard(config, "codec")  # ... and JPEG (its pixel corrector)
CODEC_TASKS = codec_study.wildcard(config, "task")
CODEC_MODELS = codec_study.wildcard(config, "model")
CODEC_MITIGATIONS = codec_study.wildcard(config, "mitigation")
LEARNED = CODEC_FORMATS.get("learned")


if LEARNED and LEARNED.get("weights", "train") == "train":

    rule train_codec:
        input:
            train=paths.manifest(LEARNED["train"]["dataset"], "train"),
        output:
            network=paths.codec_network("{quality}"),
        wildcard_constraints:
            quality=r"[1-8]",
        params:
            train=dag.trainer_params(config, LEARNED["train"]),
        threads: config["threads"]
        resources:
            **rule_resources(config, "reference"),
        conda:
            ENV
        log:
            paths.log("codecs", "learned-q{quality}"),
        benchmark:
            paths.benchmark("codecs", "learned-q{quality}")
        message:
            "Training the learned codec (CompressAI's factorized prior) at quality {wildcards.quality} on {input.train}"
        shell:
            "jpegstudy train-codec --train {input.train} --quality {wildcards.quality} --params {params.train:q}"
            " --threads {threads} --out {output.network} > {log} 2>&1"

elif LEARNED:

    rule resolve_codec:
        input:
            weights=lambda w: codec_study.learned_weights(config, int(w.quality)),
        output:
            network=paths.codec_network("{quality}"),
        wildcard_constraints:
            quality=r"[1-8]",
        resources:
            **rule_resources(config, "data"),
        conda:
            ENV
        log:
            paths.log("codecs", "learned-q{quality}"),
        message:
            "Loading CompressAI's published factorized-prior weights {input.weights} (quality {wildcards.quality})"
        shell:
            "jpegstudy resolve-codec --weights {input.weights:q} --quality {wildcards.quality}"
            " --out {output.network} > {log} 2>&1"


rule compress_codec:
    input:
        unpack(lambda w: codec_study.compress_input(config, w)),
    output:
        manifest=paths.manifest("{dataset}", "val-{codec}-q{quality}"),
    wildcard_constraints:
        codec=CODEC_NAMES,
        quality=r"[0-9]|[1-9][0-9]|100",
    params:
        codec=lambda w: codec_study.codec_options(config, w.codec),
    threads: lambda w: config["datasets"][w.dataset]["workers"]
    resources:
        **rule_resources(config, "data"),
    conda:
        ENV
    log:
        paths.log("compress", "{dataset}-{codec}-q{quality}"),
    message:
        "Compressing every {wildcards.dataset} val image with {wildcards.codec} at quality {wildcards.quality}"
    shell:
        "jpegstudy compress --manifest {input.manifest} --quality {wildcards.quality} {params.codec}"
        " --workers {threads} --out {output.manifest} > {log} 2>&1"


rule train_pixel_offtheshelf:
    input:
        train=paths.manifest(config["correction"]["dataset"], "train"),
        networks=lambda w: list(codec_study.learned_networks(config).values()) if w.codec == "learned" else [],
    output:
        model=paths.pixel_corrector("{codec}"),
    wildcard_constraints:
        codec=CODEC_OR_JPEG,
    params:
        train=lambda w: dag.codec_trainer_params(config, w, "offtheshelf"),
        codec=lambda w: codec_study.codec_options(config, w.codec, with_range=True),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "correction"),
    conda:
        ENV
    log:
        paths.log("codecs", "pixel-{codec}-offtheshelf"),
    benchmark:
        paths.benchmark("codecs", "pixel-{codec}-offtheshelf")
    message:
        "Training the pixel-domain corrector (ARCNN) off the shelf on {wildcards.codec} images"
    shell:
        "jpegstudy train-corrector --network arcnn --train {input.train} --params {params.train:q} {params.codec}"
        " --threads {threads} --device {params.device} --out {output.model} > {log} 2>&1"


rule train_pixel_ttac:
    input:
        corrector=paths.pixel_corrector("{codec}"),
        reference=paths.reference("{task}", "{model}"),
        train=lambda w: paths.manifest(dag.train_dataset(config, w.task), "train"),
        networks=lambda w: list(codec_study.learned_networks(config).values()) if w.codec == "learned" else [],
    output:
        model=paths.pixel_corrector("{codec}", "{task}", "{model}"),
    wildcard_constraints:
        codec=CODEC_OR_JPEG,
        task=CODEC_TASKS,
        model=CODEC_MODELS,
    params:
        train=lambda w: dag.codec_trainer_params(config, w, "ttac"),
        codec=lambda w: codec_study.codec_options(config, w.codec, with_range=True),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "ttac"),
    conda:
        ENV
    log:
        paths.log("codecs", "pixel-{codec}-ttac-{task}-{model}"),
    benchmark:
        paths.benchmark("codecs", "pixel-{codec}-ttac-{task}-{model}")
    message:
        "Task-targeted training of the pixel corrector through {wildcards.codec} in front of the {wildcards.task}"
        " model {wildcards.model}"
    shell:
        "jpegstudy train-ttac --task {wildcards.task} --corrector {input.corrector} --reference {input.reference}"
        " --train {input.train} --params {params.train:q} {params.codec} --threads {threads}"
        " --device {params.device} --out {output.model} > {log} 2>&1"


rule finetune_codec:
    input:
        unpack(lambda w: dag.finetune_input(config, w)),
        networks=lambda w: list(codec_study.learned_networks(config).values()) if w.codec == "learned" else [],
    output:
        model=paths.codec_finetuned("{task}", "{model}", "{codec}"),
    wildcard_constraints:
        codec=CODEC_NAMES,
        task=CODEC_TASKS,
        model=CODEC_MODELS,
    params:
        train=lambda w: dag.codec_trainer_params(config, w, "finetune"),
        codec=lambda w: codec_study.codec_options(config, w.codec, with_range=True),
        proposals=lambda w: dag.proposals_option(config, w.task, w.model, "train"),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "finetune"),
    conda:
        ENV
    log:
        paths.log("codecs", "finetune-{codec}-{task}-{model}"),
    benchmark:
        paths.benchmark("codecs", "finetune-{codec}-{task}-{model}")
    message:
        "Fine-tuning the {wildcards.task} model {wildcards.model} on training images compressed by {wildcards.codec}"
    shell:
        "jpegstudy finetune --task {wildcards.task} --reference {input.reference} --train {input.train}"
        " --params {params.train:q} {params.codec} {params.proposals} --threads {threads} --device {params.device}"
        " --out {output.model} > {log} 2>&1"


rule evaluate_codec:
    input:
        unpack(lambda w: codec_study.evaluation_input(config, w)),
    output:
        metrics=paths.codec_metrics("{codec}", "{task}", "{model}", "{mitigation}"),
        predictions=directory(paths.codec_predictions("{codec}", "{task}", "{model}", "{mitigation}")),
    wildcard_constraints:
        codec=CODEC_OR_JPEG,
        task=CODEC_TASKS,
        model=CODEC_MODELS,
        mitigation=CODEC_MITIGATIONS,
    params:
        compressed=lambda w: codec_study.compressed_args(config, w),
        corrector=lambda w, input: f"--corrector {input.correctors[0]}" if input.correctors else "",
        proposals=lambda w: dag.proposals_option(config, w.task, w.model, "val"),
        used=lambda w: dag.codec_evaluation_config(config, w),
        batch_size=lambda w: config[w.task]["eval_batch_size"],
        workers=lambda w: config[w.task]["eval_workers"],
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "evaluate"),
    conda:
        ENV
    log:
        paths.log("evaluate", "codec-{codec}-{task}-{model}-{mitigation}"),
    benchmark:
        paths.benchmark("evaluate", "codec-{codec}-{task}-{model}-{mitigation}")
    message:
        "Evaluating the {wildcards.task} model {wildcards.model} ({wildcards.mitigation}) on {wildcards.codec} images"
    shell:
        "jpegstudy evaluate --task {wildcards.task} --model {wildcards.model} --mitigation {wildcards.mitigation}"
        " --codec {wildcards.codec} --no-clean --reference {input.reference} {params.corrector}"
        " --clean {input.clean} --compressed {params.compressed} --params {params.used:q} --rule evaluate_codec"
        " --batch-size {params.batch_size} --workers {params.workers} --threads {threads}"
        " --device {params.device} {params.proposals} --out {output.metrics} --predictions {output.predictions}"
        " > {log} 2>&1"
