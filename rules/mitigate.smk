# Mitigations: fine-tuning, off-the-shelf correctors (QGAC; ARCNN/IDCN per quality) and TTAC.
# Every training job checkpoints each epoch beside its output and resumes from there when run again.

CORRECTION = config["correction"]
# The quality-aware baselines of every task's AC comparison (Table 1).
AC_NETWORKS = "|".join(sorted({n for t in study_tasks(config) if "ac_comparison" in config[t]["mitigations"]
                               for n in config[t]["ac_comparison"]["networks"]})) or "(?!)"
# The correctors' data settings (they have their own epochs); fine-tuning and TTAC read their task's section.
SHARED_CROP = {k: CLS["mitigate"][k] for k in ("workers", "crop") if k in CLS["mitigate"]}


rule frequency_stats:
    resources:
        **rule_resources(config, "data"),
    input:
        train=paths.manifest("{dataset}", "train"),
    output:
        stats=paths.frequency_stats("{dataset}"),
    conda:
        ENV
    log:
        paths.log("mitigate", "stats-{dataset}"),
    message:
        "Per-frequency DCT statistics of the lossless {wildcards.dataset} training images (QGAC's normalisation)"
    shell:
        "jpegstudy frequency-stats --train {input.train} --out {output.stats} > {log} 2>&1"


if CORRECTION["qgac"]["weights"] == "train":

    rule train_offtheshelf_qgac:
        input:
            train=paths.manifest(CORRECTION["dataset"], "train"),
            stats=paths.frequency_stats(CORRECTION["dataset"]),
        output:
            model=paths.offtheshelf("qgac"),
        params:
            train=dag.trainer_params(config, CORRECTION["qgac"], CORRECTION["qgac"]["train"], SHARED_CROP),
            device=config["device"],
        threads: config["threads"]
        resources:
            **rule_resources(config, "correction"),
        conda:
            ENV
        log:
            paths.log("mitigate", "qgac-offtheshelf"),
        benchmark:
            paths.benchmark("mitigate", "qgac-offtheshelf")
        message:
            "Training QGAC off the shelf (pixel loss, quality ~ U[10, 90]) on {input.train}"
        shell:
            "jpegstudy train-corrector --network qgac --train {input.train} --stats {input.stats}"
            " --params {params.train:q} --threads {threads} --device {params.device} --out {output.model} > {log} 2>&1"

else:

    rule resolve_qgac:
        resources:
            **rule_resources(config, "data"),
        input:
            weights=CORRECTION["qgac"]["weights"],
            stats=[CORRECTION["qgac"]["stats"]] if CORRECTION["qgac"].get("stats") else [],
        output:
            model=paths.offtheshelf("qgac"),
        params:
            net=as_json(CORRECTION["qgac"]),
            stats=lambda w, input: f"--stats {shlex.quote(input.stats[0])}" if input.stats else "",
        conda:
            ENV
        log:
            paths.log("mitigate", "qgac-offtheshelf"),
        message:
            "Loading the published QGAC weights {input.weights}"
        shell:
            "jpegstudy resolve-corrector --network qgac --weights {input.weights:q} {params.stats}"
            " --params {params.net:q} --out {output.model} > {log} 2>&1"


rule train_offtheshelf_quality_aware:
    input:
        train=paths.manifest(CORRECTION["dataset"], "train"),
    output:
        model=paths.offtheshelf("{network}", "{quality}"),
    wildcard_constraints:
        network=AC_NETWORKS,
        quality=r"[1-9][0-9]?|100",
    params:
        train=lambda w: dag.trainer_params(config, CORRECTION[w.network], CORRECTION[w.network]["train"], SHARED_CROP),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "correction"),
    conda:
        ENV
    log:
        paths.log("mitigate", "{network}-q{quality}-offtheshelf"),
    benchmark:
        paths.benchmark("mitigate", "{network}-q{quality}-offtheshelf")
    message:
        "Training {wildcards.network} for quality {wildcards.quality} off the shelf (MSE) on {input.train}"
    shell:
        "jpegstudy train-corrector --network {wildcards.network} --quality {wildcards.quality}"
        " --train {input.train} --params {params.train:q} --threads {threads} --device {params.device}"
        " --out {output.model} > {log} 2>&1"


rule train_ttac:
    input:
        unpack(lambda w: dag.ttac_input(config, w)),
    output:
        model=paths.ttac("{network}", "{task}", "{model}"),
    wildcard_constraints:
        network="qgac",
        task=TASK_NAMES,
    params:
        train=lambda w: dag.mitigation_params(config, w, "ttac"),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "ttac"),
    conda:
        ENV
    log:
        paths.log("mitigate", "{network}-ttac-{task}-{model}"),
    benchmark:
        paths.benchmark("mitigate", "{network}-ttac-{task}-{model}")
    message:
        "Task-targeted training of {wildcards.network} in front of the frozen {wildcards.task} model"
        " {wildcards.model} (no labels)"
    shell:
        "jpegstudy train-ttac --task {wildcards.task} --corrector {input.corrector} --reference {input.reference}"
        " --train {input.train} --params {params.train:q} --threads {threads} --device {params.device}"
        " --out {output.model} > {log} 2>&1"


use rule train_ttac as train_ttac_quality_aware with:
    params:
        train=lambda w: dag.mitigation_params(config, w, "ttac", dag.images_cap(CORRECTION[w.network])),
        device=config["device"],
    output:
        model=paths.ttac("{network}", "{task}", "{model}", "{quality}"),
    wildcard_constraints:
        network=AC_NETWORKS,
        task=TASK_NAMES,
        quality=r"[1-9][0-9]?|100",
    log:
        paths.log("mitigate", "{network}-q{quality}-ttac-{task}-{model}"),
    benchmark:
        paths.benchmark("mitigate", "{network}-q{quality}-ttac-{task}-{model}")
    message:
        "Task-targeted training of {wildcards.network} (Q={wildcards.quality}) in front of the {wildcards.task}"
        " model {wildcards.model}"


rule finetune:
    input:
        unpack(lambda w: dag.finetune_input(config, w)),
    output:
        model=paths.finetuned("{task}", "{model}"),
    wildcard_constraints:
        task=TASK_NAMES,
    params:
        train=lambda w: dag.mitigation_params(config, w, "finetune"),
        proposals=lambda w: dag.proposals_option(config, w.task, w.model, "train"),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "finetune"),
    conda:
        ENV
    log:
        paths.log("mitigate", "finetune-{task}-{model}"),
    benchmark:
        paths.benchmark("mitigate", "finetune-{task}-{model}")
    message:
        "Fine-tuning the {wildcards.task} model {wildcards.model} on training images JPEG-compressed at quality"
        " ~ U[10, 90]"
    shell:
        "jpegstudy finetune --task {wildcards.task} --reference {input.reference} --train {input.train}"
        " --params {params.train:q} {params.proposals} --threads {threads} --device {params.device}"
        " --out {output.model} > {log} 2>&1"


rule train_multihead:
    input:
        unpack(lambda w: dag.multihead_input(config, w)),
    output:
        model=paths.multihead("{network}", "{group}"),
    wildcard_constraints:
        network="qgac",
        group=MULTIHEAD_GROUPS,
    params:
        members=lambda w: dag.multihead_member_args(config, w),
        train=lambda w: dag.multihead_params(config, w),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "multihead"),
    conda:
        ENV
    log:
        paths.log("mitigate", "{network}-multihead-{group}"),
    benchmark:
        paths.benchmark("mitigate", "{network}-multihead-{group}")
    message:
        "Multihead training of {wildcards.network} in front of every frozen model of group {wildcards.group}"
        " at once (no labels)"
    shell:
        "jpegstudy train-multihead --corrector {input.corrector} {params.members} --params {params.train:q}"
        " --threads {threads} --device {params.device} --out {output.model} > {log} 2>&1"
