# Datasets: generated (embedded) or referenced in place (imagenet), then compressed at every quality.


rule prepare_embedded:
    resources:
        **rule_resources(config, "data"),
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="embedded"),
        split="train|val",
    params:
        size=lambda w: config["datasets"][w.dataset]["image_size"],
        per_class=lambda w: config["datasets"][w.dataset][f"{w.split}_per_class"],
        seed=config["seed"],
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Generating the {wildcards.split} split of the embedded dataset {wildcards.dataset}"
    shell:
        "jpegstudy prepare-embedded --dataset {wildcards.dataset} --split {wildcards.split}"
        " --per-class {params.per_class}"
        " --size {params.size} --seed {params.seed} --out {output.manifest} > {log} 2>&1"


rule prepare_embedded_coco:
    resources:
        **rule_resources(config, "data"),
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="embedded_coco"),
        split="train|val",
    params:
        size=lambda w: config["datasets"][w.dataset]["image_size"],
        images=lambda w: config["datasets"][w.dataset][f"{w.split}_images"],
        seed=config["seed"],
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Generating the {wildcards.split} scenes of the embedded detection dataset {wildcards.dataset} (COCO layout)"
    shell:
        "jpegstudy prepare-embedded-coco --dataset {wildcards.dataset} --split {wildcards.split}"
        " --images {params.images} --size {params.size} --seed {params.seed} --out {output.manifest} > {log} 2>&1"


rule prepare_embedded_ade20k:
    resources:
        **rule_resources(config, "data"),
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="embedded_ade20k"),
        split="train|val",
    params:
        size=lambda w: config["datasets"][w.dataset]["image_size"],
        images=lambda w: config["datasets"][w.dataset][f"{w.split}_images"],
        seed=config["seed"],
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Generating the {wildcards.split} scenes of the embedded segmentation dataset {wildcards.dataset} (ADE20K"
        " layout)"
    shell:
        "jpegstudy prepare-embedded-ade20k --dataset {wildcards.dataset} --split {wildcards.split}"
        " --images {params.images} --size {params.size} --seed {params.seed} --out {output.manifest} > {log} 2>&1"


rule prepare_ade20k:
    resources:
        **rule_resources(config, "data"),
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="ade20k"),
        split="val|train",
    params:
        root=lambda w: config["datasets"][w.dataset]["root"],
        check=lambda w: "" if config["datasets"][w.dataset]["check_images"] else "--no-check",
    threads: lambda w: config["datasets"][w.dataset]["workers"]
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Listing {params.root} as the {wildcards.split} split of {wildcards.dataset} (ADE20K layout, in place)"
    shell:
        "jpegstudy prepare-ade20k --dataset {wildcards.dataset} --root {params.root:q} --split {wildcards.split}"
        " {params.check} --workers {threads} --out {output.manifest} > {log} 2>&1"


rule prepare_coco:
    resources:
        **rule_resources(config, "data"),
    input:
        annotations=lambda w: config["datasets"][w.dataset][f"{w.split}_annotations"],
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="coco"),
        split="val|train",
    params:
        root=lambda w: config["datasets"][w.dataset][w.split],
        check=lambda w: "" if config["datasets"][w.dataset]["check_images"] else "--no-check",
    threads: lambda w: config["datasets"][w.dataset]["workers"]
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Listing {params.root} with {input.annotations} as the {wildcards.split} split of {wildcards.dataset} (in"
        " place, not copied)"
    shell:
        "jpegstudy prepare-coco --dataset {wildcards.dataset} --images {params.root:q}"
        " --annotations {input.annotations:q} --split {wildcards.split} {params.check} --workers {threads}"
        " --out {output.manifest} > {log} 2>&1"


rule prepare_imagenet:
    resources:
        **rule_resources(config, "data"),
    input:
        # Labels of a flat val folder; a train folder has class folders.
        ground_truth=lambda w: ground_truth_files(config["datasets"][w.dataset]) if w.split == "val" else [],
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="imagenet"),
        split="val|train",
    params:
        root=lambda w: config["datasets"][w.dataset][w.split],
        ground_truth=lambda w, input: (
            f"--ground-truth {shlex.quote(input.ground_truth[0])}" if input.ground_truth else ""
        ),
        check=lambda w: "" if config["datasets"][w.dataset]["check_images"] else "--no-check",
    threads: lambda w: config["datasets"][w.dataset]["workers"]
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Listing {params.root} as the {wildcards.split} split of {wildcards.dataset} (in place, not copied)"
    shell:
        "jpegstudy prepare-imagenet --dataset {wildcards.dataset} --root {params.root:q} --split {wildcards.split}"
        " {params.ground_truth}"
        " {params.check} --workers {threads} --out {output.manifest} > {log} 2>&1"


# Forensics: a generator trained here on scenes of its own makes the fakes; the real images are other scenes.
rule train_generator:
    resources:
        **rule_resources(config, "reference"),
    output:
        generator=paths.generator("{dataset}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="embedded_forensics"),
    params:
        train=lambda w: as_json(
            {
                **config["datasets"][w.dataset]["generator"],
                "image_size": config["datasets"][w.dataset]["image_size"],
                "seed": config["seed"],
            }
        ),
    threads: config["threads"]
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-generator"),
    benchmark:
        paths.benchmark("data", "{dataset}-generator")
    message:
        "Training the generator that makes the fakes of {wildcards.dataset} (on embedded scenes of its own)"
    shell:
        "jpegstudy train-generator --params {params.train:q} --threads {threads} --out {output.generator} > {log} 2>&1"


rule prepare_embedded_forensics:
    resources:
        **rule_resources(config, "data"),
    input:
        generator=paths.generator("{dataset}"),
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="embedded_forensics"),
        split="train|val",
    params:
        size=lambda w: config["datasets"][w.dataset]["image_size"],
        images=lambda w: config["datasets"][w.dataset][f"{w.split}_images"],
        seed=config["seed"],
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Writing the {wildcards.split} split of {wildcards.dataset}: real scenes and {input.generator}'s fakes"
        " (CNNDetection layout)"
    shell:
        "jpegstudy prepare-embedded-forensics --dataset {wildcards.dataset} --split {wildcards.split}"
        " --generator {input.generator} --images {params.images} --size {params.size} --seed {params.seed}"
        " --out {output.manifest} > {log} 2>&1"


rule prepare_forensics:
    resources:
        **rule_resources(config, "data"),
    output:
        manifest=paths.manifest("{dataset}", "{split}"),
    wildcard_constraints:
        dataset=wildcard_names(config["datasets"], kind="forensics"),
        split="val|train",
    params:
        root=lambda w: config["datasets"][w.dataset][w.split],
        check=lambda w: "" if config["datasets"][w.dataset]["check_images"] else "--no-check",
    threads: lambda w: config["datasets"][w.dataset]["workers"]
    conda:
        ENV
    log:
        paths.log("data", "{dataset}-{split}"),
    message:
        "Listing {params.root} as the {wildcards.split} split of {wildcards.dataset} (CNNDetection layout, in place)"
    shell:
        "jpegstudy prepare-forensics --dataset {wildcards.dataset} --root {params.root:q} --split {wildcards.split}"
        " {params.check} --workers {threads} --out {output.manifest} > {log} 2>&1"


rule compress:
    resources:
        **rule_resources(config, "data"),
    input:
        manifest=paths.manifest("{dataset}", "val"),
    output:
        manifest=paths.manifest("{dataset}", "val-q{quality}"),
    wildcard_constraints:
        quality=r"[1-9][0-9]?|100",  # as written in config: no leading zeros
    threads: lambda w: config["datasets"][w.dataset]["workers"]
    conda:
        ENV
    log:
        paths.log("compress", "{dataset}-q{quality}"),
    message:
        "Compressing every {wildcards.dataset} val image at JPEG quality {wildcards.quality}"
    shell:
        "jpegstudy compress --manifest {input.manifest} --quality {wildcards.quality} --workers {threads}"
        " --out {output.manifest} > {log} 2>&1"
