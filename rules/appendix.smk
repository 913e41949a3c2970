# Appendices: per classification model, GradCAM (appendix A) and qualitative results (appendix C) on a few fixed
# validation images, the JPEG at the lowest quality and each mitigation the config asks for. They run on the CPU
# (a few images; the files come out the same wherever they are made).

from pathlib import Path

APPENDIX_QUALITY = min(QUALITIES)
APPENDIX_PARAMS = as_json(
    {"samples": config["report"]["samples"], "quality": APPENDIX_QUALITY, "dpi": config["report"]["figure"]["dpi"]}
)

APPENDIX_GRADCAM = {model: paths.appendix(f"gradcam_classification_{model}", "pdf") for model in CLS_MODELS}
APPENDIX_QUALITATIVE = {model: paths.appendix(f"qualitative_classification_{model}", "pdf") for model in CLS_MODELS}
# TIDE (appendix B): each detector's errors without mitigation, {model: what it analyses (bbox or segm)}.
TIDE_MODELS = dag.tide_models(config)
TIDE_PIECES = {f"tide:{model}:{Path(p).stem.removeprefix(f'tide_{model}_')}": p
               for model in TIDE_MODELS for p in dag.tide_plots(config, model)}
if TIDE_MODELS:
    TIDE_PIECES["tide:dap"] = paths.appendix("tide_dap", "pdf")
# Every file the appendix rules write (pdf and png), for `rule all`.
APPENDIX_TARGETS = [
    paths.appendix(f"{kind}_classification_{model}", ext)
    for kind in ("gradcam", "qualitative")
    for model in CLS_MODELS
    for ext in ("pdf", "png")
] + list(TIDE_PIECES.values()) + ([paths.appendix("tide_dap", "png")] if TIDE_MODELS else [])
# Appendix C for detection: one figure per detector.
DETECTORS = list(config.get("detection", {}).get("models", {}))
APPENDIX_QUALITATIVE_DETECTION = {model: paths.appendix(f"qualitative_detection_{model}", "pdf")
                                  for model in DETECTORS}
APPENDIX_TARGETS += [paths.appendix(f"qualitative_detection_{model}", ext) for model in DETECTORS
                     for ext in ("pdf", "png")]
# And for semantic segmentation: one figure per segmenter.
SEGMENTERS = list(config.get("segmentation", {}).get("models", {}))
APPENDIX_QUALITATIVE_SEGMENTATION = {model: paths.appendix(f"qualitative_segmentation_{model}", "pdf")
                                     for model in SEGMENTERS}
APPENDIX_TARGETS += [paths.appendix(f"qualitative_segmentation_{model}", ext) for model in SEGMENTERS
                     for ext in ("pdf", "png")]


rule appendix_gradcam_classification:
    resources:
        **rule_resources(config, "appendix"),
    input:
        unpack(lambda w: dag.appendix_input(config, w)),
    output:
        pdf=paths.appendix("gradcam_classification_{model}", "pdf"),
        png=report(
            paths.appendix("gradcam_classification_{model}", "png"),
            caption="captions/gradcam.rst",
            category="Appendix A: GradCAM",
            subcategory="{model}",
        ),
    wildcard_constraints:
        model="|".join(CLS_MODELS),
    params:
        figure=APPENDIX_PARAMS,
        mitigations=lambda w: dag.appendix_mitigation_args(config, w),
    conda:
        ENV
    log:
        paths.log("report", "appendix-gradcam_classification-{model}"),
    message:
        "GradCAM and guided-backprop maps of {wildcards.model} on the original, Q={APPENDIX_QUALITY} and mitigated"
        " images (appendix A)"
    shell:
        "jpegstudy gradcam --model {wildcards.model} --reference {input.reference} --clean {input.clean}"
        " --compressed {input.compressed} {params.mitigations} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule appendix_qualitative_classification:
    resources:
        **rule_resources(config, "appendix"),
    input:
        unpack(lambda w: dag.appendix_input(config, w)),
    output:
        pdf=paths.appendix("qualitative_classification_{model}", "pdf"),
        png=report(
            paths.appendix("qualitative_classification_{model}", "png"),
            caption="captions/qualitative.rst",
            category="Appendix C: Qualitative results",
            subcategory="{model}",
        ),
    wildcard_constraints:
        model="|".join(CLS_MODELS),
    params:
        figure=APPENDIX_PARAMS,
        mitigations=lambda w: dag.appendix_mitigation_args(config, w),
    conda:
        ENV
    log:
        paths.log("report", "appendix-qualitative_classification-{model}"),
    message:
        "Predictions of {wildcards.model} on the Q={APPENDIX_QUALITY} JPEG and after each mitigation (appendix C)"
    shell:
        "jpegstudy qualitative --model {wildcards.model} --reference {input.reference} --clean {input.clean}"
        " --compressed {input.compressed} {params.mitigations} --params {params.figure:q}"
        " --out {output.pdf} {output.png} > {log} 2>&1"


rule appendix_qualitative_detection:
    resources:
        **rule_resources(config, "appendix"),
    input:
        unpack(lambda w: dag.appendix_input(config, w, "detection")),
    output:
        pdf=paths.appendix("qualitative_detection_{model}", "pdf"),
        png=report(
            paths.appendix("qualitative_detection_{model}", "png"),
            caption="captions/qualitative_detection.rst",
            category="Appendix C: Qualitative results",
            subcategory="{model}",
        ),
    wildcard_constraints:
        model="|".join(DETECTORS) or "(?!)",
    params:
        figure=APPENDIX_PARAMS,
        mitigations=lambda w: dag.appendix_mitigation_args(config, w, "detection"),
        proposals=lambda w: dag.proposals_option(config, "detection", w.model, "val"),
    conda:
        ENV
    log:
        paths.log("report", "appendix-qualitative_detection-{model}"),
    message:
        "Detections of {wildcards.model} on the Q={APPENDIX_QUALITY} JPEG and after each mitigation (appendix C)"
    shell:
        "jpegstudy qualitative --task detection --model {wildcards.model} --reference {input.reference}"
        " --clean {input.clean} --compressed {input.compressed} {params.mitigations} {params.proposals}"
        " --params {params.figure:q} --out {output.pdf} {output.png} > {log} 2>&1"


rule appendix_qualitative_segmentation:
    resources:
        **rule_resources(config, "appendix"),
    input:
        unpack(lambda w: dag.appendix_input(config, w, "segmentation")),
    output:
        pdf=paths.appendix("qualitative_segmentation_{model}", "pdf"),
        png=report(
            paths.appendix("qualitative_segmentation_{model}", "png"),
            caption="captions/qualitative_segmentation.rst",
            category="Appendix C: Qualitative results",
            subcategory="{model}",
        ),
    wildcard_constraints:
        model="|".join(SEGMENTERS) or "(?!)",
    params:
        figure=APPENDIX_PARAMS,
        mitigations=lambda w: dag.appendix_mitigation_args(config, w, "segmentation"),
    conda:
        ENV
    log:
        paths.log("report", "appendix-qualitative_segmentation-{model}"),
    message:
        "Label maps of {wildcards.model} on the Q={APPENDIX_QUALITY} JPEG and after each mitigation (appendix C)"
    shell:
        "jpegstudy qualitative --task segmentation --model {wildcards.model} --reference {input.reference}"
        " --clean {input.clean} --compressed {input.compressed} {params.mitigations}"
        " --params {params.figure:q} --out {output.pdf} {output.png} > {log} 2>&1"


rule tide:
    resources:
        **rule_resources(config, "appendix"),
    input:
        predictions=paths.predictions("detection", "{model}", "none"),
        clean=lambda w: paths.manifest(config["detection"]["dataset"], "val"),
        compressed=lambda w: [paths.manifest(config["detection"]["dataset"], f"val-q{q}") for q in QUALITIES],
    output:
        tide=paths.tide("detection", "{model}"),
        plots=[report(p, caption="captions/tide.rst", category="Appendix B: TIDE", subcategory="{model}")
               for p in dag.tide_plots(config, "{model}")],
    wildcard_constraints:
        model="|".join(TIDE_MODELS) or "(?!)",
    params:
        iou_type=lambda w: TIDE_MODELS[w.model],
        compressed=lambda w, input: " ".join(f"{q}={m}" for q, m in zip(QUALITIES, input.compressed)),
        plots=lambda w: paths.appendix(f"tide_{w.model}_", "png").removesuffix(".png"),
    conda:
        ENV
    log:
        paths.log("report", "tide-{model}"),
    message:
        "TIDE's error analysis of {wildcards.model} ({params.iou_type}) on clean and every JPEG quality (appendix B)"
    shell:
        "jpegstudy tide --model {wildcards.model} --iou-type {params.iou_type} --clean {input.clean}"
        " --compressed {params.compressed} --predictions {input.predictions} --plots {params.plots}"
        " --out {output.tide} > {log} 2>&1"


rule tide_figure:
    resources:
        **rule_resources(config, "appendix"),
    input:
        tide=[paths.tide("detection", model) for model in TIDE_MODELS],
    output:
        pdf=paths.appendix("tide_dap", "pdf"),
        png=report(paths.appendix("tide_dap", "png"), caption="captions/tide_dap.rst", category="Appendix B: TIDE"),
    conda:
        ENV
    log:
        paths.log("report", "tide-figure"),
    message:
        "Plotting each TIDE error's dAP against JPEG quality, a panel per detector (appendix B)"
    shell:
        "jpegstudy tide-figure {input.tide} --png {output.png} --pdf {output.pdf} > {log} 2>&1"
