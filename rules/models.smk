# Task models: trained here (embedded study) or resolved from torchvision weights / a checkpoint. A model of the
# user's own (arch: path/to/file.py:function or package.module:function) has the file defining it as an input.
from jpegstudy.config import builder_file


rule train_reference:
    input:
        train=paths.manifest(CLS_DATASET, "train"),
        builder=lambda w: builder_file(CLS_MODELS[w.model].get("arch", w.model)),
    output:
        model=paths.reference("classification", "{model}"),
    wildcard_constraints:
        model=wildcard_names(CLS_MODELS, weights="train"),
    params:
        arch=lambda w: CLS_MODELS[w.model].get("arch", w.model),
        train=lambda w: as_json(
            {
                **CLS_MODELS[w.model]["train"],
                "transform": CLS_MODELS[w.model]["transform"],
                "seed": config["seed"],
                "image_size": config["datasets"][CLS_DATASET].get("image_size"),
            }
        ),
        device=config["device"],
    threads: config["threads"]
    resources:
        **rule_resources(config, "reference", "classification"),
    conda:
        ENV
    log:
        paths.log("models", "classification-{model}"),
    benchmark:
        paths.benchmark("models", "classification-{model}")
    message:
        "Training the reference classifier {wildcards.model} on {input.train}"
    shell:
        "jpegstudy train-reference --arch {params.arch:q} --train {input.train} --params {params.train:q}"
        " --threads {threads} --device {params.device} --out {output.model} > {log} 2>&1"


rule resolve_model:
    resources:
        **rule_resources(config, "data", "classification"),
    input:
        classes=paths.manifest(CLS_DATASET, "val"),
        checkpoint=lambda w: checkpoint_file(CLS_MODELS[w.model]["weights"]),
        builder=lambda w: builder_file(CLS_MODELS[w.model].get("arch", w.model)),
    output:
        model=paths.reference("classification", "{model}"),
    wildcard_constraints:
        model=wildcard_names(
            {n: m for n, m in CLS_MODELS.items() if m["weights"] != "train"}
        ),
    params:
        arch=lambda w: CLS_MODELS[w.model].get("arch", w.model),
        weights=lambda w: CLS_MODELS[w.model]["weights"],
        transform=lambda w: as_json(CLS_MODELS[w.model]["transform"]),
    conda:
        ENV
    log:
        paths.log("models", "classification-{model}"),
    message:
        "Resolving {params.weights} for {wildcards.model}"
    shell:
        "jpegstudy resolve-model --arch {params.arch:q} --weights {params.weights:q} --classes-from {input.classes}"
        " --transform {params.transform:q} --out {output.model} > {log} 2>&1"


if "detection" in config:
    DET = config["detection"]

    rule train_detector:
        input:
            train=paths.manifest(DET["dataset"], "train"),
            backbone=lambda w: paths.reference("classification", DET["models"][w.model]["backbone"]),
            proposals=lambda w: list(dag.proposals_input(config, "detection", w.model, "train").values()),
        output:
            model=paths.reference("detection", "{model}"),
        wildcard_constraints:
            model=wildcard_names(DET["models"], weights="train"),
        params:
            arch=lambda w: DET["models"][w.model].get("arch", w.model),
            train=lambda w: as_json(
                {
                    **DET["models"][w.model]["train"],
                    "seed": config["seed"],
                    "image_size": config["datasets"][DET["dataset"]]["image_size"],
                }
            ),
            proposals=lambda w: dag.proposals_option(config, "detection", w.model, "train"),
            device=config["device"],
        threads: config["threads"]
        resources:
            **rule_resources(config, "reference", "detection"),
        conda:
            ENV
        log:
            paths.log("models", "detection-{model}"),
        benchmark:
            paths.benchmark("models", "detection-{model}")
        message:
            "Training the detector {wildcards.model} on {input.train}, its backbone from {input.backbone}"
        shell:
            "jpegstudy train-detector --arch {params.arch} --backbone {input.backbone} --train {input.train}"
            " {params.proposals} --params {params.train:q} --threads {threads} --device {params.device}"
            " --out {output.model} > {log} 2>&1"

    # Fast R-CNN's proposals: a Faster or Mask R-CNN's RPN on the clean images of a split, made once and used at
    # every quality, as Detectron2's shipped proposals were made on the original COCO images.
    rule propose:
        resources:
            **rule_resources(config, "evaluate", "detection"),
        input:
            reference=paths.reference("detection", "{source}"),
            split=paths.manifest(DET["dataset"], "{split}"),
        output:
            proposals=paths.proposals("{source}", "{split}"),
        wildcard_constraints:
            source=wildcard_names(dag.proposal_sources(config)),
            split="train|val",
        params:
            batch_size=DET["eval_batch_size"],
        threads: config["threads"]
        conda:
            ENV
        log:
            paths.log("models", "proposals-{source}-{split}"),
        benchmark:
            paths.benchmark("models", "proposals-{source}-{split}")
        message:
            "Proposals of the RPN of {wildcards.source} on {input.split}"
        shell:
            "jpegstudy propose --reference {input.reference} --split {input.split} --batch-size {params.batch_size}"
            " --threads {threads} --out {output.proposals} > {log} 2>&1"

    rule resolve_detector:
        resources:
            **rule_resources(config, "data", "detection"),
        input:
            classes=paths.manifest(DET["dataset"], "val"),
            checkpoint=lambda w: checkpoint_file(DET["models"][w.model]["weights"]),
        output:
            model=paths.reference("detection", "{model}"),
        wildcard_constraints:
            model=wildcard_names({n: m for n, m in DET["models"].items() if m["weights"] != "train"}),
        params:
            arch=lambda w: DET["models"][w.model].get("arch", w.model),
            weights=lambda w: DET["models"][w.model]["weights"],
        conda:
            ENV
        log:
            paths.log("models", "detection-{model}"),
        message:
            "Resolving {params.weights} for the detector {wildcards.model}"
        shell:
            "jpegstudy resolve-detector --arch {params.arch} --weights {params.weights:q}"
            " --classes-from {input.classes} --out {output.model} > {log} 2>&1"


if "segmentation" in config:
    SEG = config["segmentation"]

    rule train_segmenter:
        input:
            train=paths.manifest(SEG["dataset"], "train"),
            backbone=lambda w: paths.reference("classification", SEG["models"][w.model]["backbone"]),
        output:
            model=paths.reference("segmentation", "{model}"),
        wildcard_constraints:
            model=wildcard_names(SEG["models"], weights="train"),
        params:
            encoder=lambda w: SEG["models"][w.model]["encoder"],
            decoder=lambda w: SEG["models"][w.model]["decoder"],
            train=lambda w: as_json(
                {
                    **SEG["models"][w.model]["train"],
                    "seed": config["seed"],
                    "image_size": config["datasets"][SEG["dataset"]]["image_size"],
                }
            ),
            device=config["device"],
        threads: config["threads"]
        resources:
            **rule_resources(config, "reference", "segmentation"),
        conda:
            ENV
        log:
            paths.log("models", "segmentation-{model}"),
        benchmark:
            paths.benchmark("models", "segmentation-{model}")
        message:
            "Training the segmenter {wildcards.model} ({params.encoder} + {params.decoder}) on {input.train}, its"
            " encoder from {input.backbone}"
        shell:
            "jpegstudy train-segmenter --encoder {params.encoder} --decoder {params.decoder}"
            " --backbone {input.backbone} --train {input.train} --params {params.train:q} --threads {threads}"
            " --device {params.device} --out {output.model} > {log} 2>&1"

    rule resolve_segmenter:
        resources:
            **rule_resources(config, "data", "segmentation"),
        input:
            classes=paths.manifest(SEG["dataset"], "val"),
            encoder=lambda w: SEG["models"][w.model]["weights"]["encoder"],
            decoder=lambda w: SEG["models"][w.model]["weights"]["decoder"],
        output:
            model=paths.reference("segmentation", "{model}"),
        wildcard_constraints:
            model=wildcard_names({n: m for n, m in SEG["models"].items() if m["weights"] != "train"}),
        params:
            encoder=lambda w: SEG["models"][w.model]["encoder"],
            decoder=lambda w: SEG["models"][w.model]["decoder"],
        conda:
            ENV
        log:
            paths.log("models", "segmentation-{model}"),
        message:
            "Loading CSAIL's {params.encoder} + {params.decoder} weights for the segmenter {wildcards.model}"
        shell:
            "jpegstudy resolve-segmenter --encoder {params.encoder} --decoder {params.decoder}"
            " --encoder-weights {input.encoder:q} --decoder-weights {input.decoder:q} --classes-from {input.classes}"
            " --out {output.model} > {log} 2>&1"


if "forensics" in config:
    FOR = config["forensics"]

    rule train_forensic:
        input:
            train=paths.manifest(FOR["dataset"], "train"),
        output:
            model=paths.reference("forensics", "{model}"),
        wildcard_constraints:
            model=wildcard_names(FOR["models"], weights="train"),
        params:
            train=lambda w: as_json(
                {
                    **dag.forensic_settings(FOR["models"][w.model]),
                    **FOR["models"][w.model]["train"],
                    "seed": config["seed"],
                    "image_size": config["datasets"][FOR["dataset"]]["image_size"],
                }
            ),
            device=config["device"],
        threads: config["threads"]
        resources:
            **rule_resources(config, "reference", "forensics"),
        conda:
            ENV
        log:
            paths.log("models", "forensics-{model}"),
        benchmark:
            paths.benchmark("models", "forensics-{model}")
        message:
            "Training the forensic detector {wildcards.model} on {input.train}"
        shell:
            "jpegstudy train-forensic --train {input.train} --params {params.train:q} --threads {threads}"
            " --device {params.device} --out {output.model} > {log} 2>&1"

    rule resolve_forensic:
        resources:
            **rule_resources(config, "data", "forensics"),
        input:
            weights=lambda w: FOR["models"][w.model]["weights"],
        output:
            model=paths.reference("forensics", "{model}"),
        wildcard_constraints:
            model=wildcard_names({n: m for n, m in FOR["models"].items() if m["weights"] != "train"}),
        params:
            settings=lambda w: as_json(dag.forensic_settings(FOR["models"][w.model])),
        conda:
            ENV
        log:
            paths.log("models", "forensics-{model}"),
        message:
            "Loading {input.weights} as the forensic detector {wildcards.model}"
        shell:
            "jpegstudy resolve-forensic --weights {input.weights:q} --params {params.settings:q}"
            " --out {output.model} > {log} 2>&1"
