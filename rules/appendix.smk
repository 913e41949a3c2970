# Appendices: per classification model, GradCAM (appendix A) and qualitative results (appendix C) on a few fixed
# validation images, the JPEG at the lowest quality and each mitigation the config asks for. They run on the CPU
# (a few images; the files come out the same wherever they are made).

APPENDIX_QUALITY = min(QUALITIES)
APPENDIX_PARAMS = as_json(
    {"samples": config["report"]["samples"], "quality": APPENDIX_QUALITY, "dpi": config["report"]["figure"]["dpi"]}
)

APPENDIX_GRADCAM = {model: paths.appendix(f"gradcam_classification_{model}", "pdf") for model in CLS_MODELS}
APPENDIX_QUALITATIVE = {model: paths.appendix(f"qualitative_classification_{model}", "pdf") for model in CLS_MODELS}
# Every file the appendix rules write (pdf and png), for `rule all`.
APPENDIX_TARGETS = [
    paths.appendix(f"{kind}_classification_{model}", ext)
    for kind in ("gradcam", "qualitative")
    for model in CLS_MODELS
    for ext in ("pdf", "png")
]


rule appendix_gradcam_classification:
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
