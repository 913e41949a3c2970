"""Every path of the study in one place (as showyourwork's paths module): rules and code never spell them out."""

from __future__ import annotations

RESULTS = "results"
REPORTS = "reports"


def manifest(dataset: str, split: str) -> str:
    return f"{RESULTS}/data/{dataset}/{split}/manifest.json"


def reference(task: str, model: str) -> str:
    return f"{RESULTS}/models/{task}/{model}/reference.pt"


def metrics(task: str, model: str, mitigation: str) -> str:
    return f"{RESULTS}/metrics/{task}/{model}/{mitigation}.json"


def predictions(task: str, model: str, mitigation: str) -> str:
    """A folder beside the metric file: the model's predictions on each eval set (clean.json, q{quality}.json);
    detection's are COCO results files."""
    return f"{RESULTS}/predictions/{task}/{model}/{mitigation}"


def generator(dataset: str) -> str:
    """The generator that makes an embedded_forensics dataset's fakes (data/fakes.py)."""
    return f"{RESULTS}/models/forensics/generator/{dataset}.pt"


def proposals(model: str, split: str) -> str:
    """The RPN proposals of the detector `model` on a clean split: a Fast R-CNN's input (tasks/proposals.py)."""
    return f"{RESULTS}/proposals/detection/{model}/{split}.json"


def tide(task: str, model: str) -> str:
    """TIDE's errors of a detector without mitigation on clean and every quality (appendix B)."""
    return f"{RESULTS}/metrics/tide/{task}/{model}.json"


def log(stage: str, name: str) -> str:
    return f"{RESULTS}/logs/{stage}/{name}.log"


def benchmark(stage: str, name: str) -> str:
    return f"{RESULTS}/benchmarks/{stage}/{name}.tsv"


def table(name: str) -> str:
    return f"{REPORTS}/tables/{name}.tex"


def table_html(name: str) -> str:
    return f"{REPORTS}/tables/{name}.html"


def figure(name: str, ext: str) -> str:
    return f"{REPORTS}/figures/{name}.{ext}"


def finetuned(task: str, model: str) -> str:
    return f"{RESULTS}/models/{task}/{model}/finetune.pt"


def frequency_stats(dataset: str) -> str:
    """Per-frequency DCT mean/std of a dataset's lossless training images (QGAC's input normalisation)."""
    return f"{RESULTS}/models/correction/stats/{dataset}.pt"


def offtheshelf(network: str, quality: int | str | None = None) -> str:
    """A corrector trained for image quality; quality-aware networks (ARCNN, IDCN) have one per quality."""
    where = f"{network}/q{quality}" if quality is not None else network
    return f"{RESULTS}/models/correction/{where}/offtheshelf.pt"


def ttac(network: str, task: str, model: str, quality: int | str | None = None) -> str:
    """A corrector task-targeted on one task model."""
    where = f"{network}/q{quality}" if quality is not None else network
    return f"{RESULTS}/models/correction/{where}/ttac/{task}-{model}.pt"


def multihead(network: str, group: str) -> str:
    """A corrector task-targeted on every member of a multihead group at once."""
    return f"{RESULTS}/models/correction/{network}/multihead/{group}.pt"


def resume(output: str) -> str:
    """Where a training job keeps its per-epoch checkpoint, beside (not as) its output, so snakemake never
    deletes it when the job is killed."""
    return f"{output}.resume"


def throughput(task: str, model: str) -> str:
    return f"{RESULTS}/metrics/throughput/{task}/{model}.json"


def appendix(name: str, ext: str) -> str:
    """A figure or table of an appendix (GradCAM, qualitative results, throughput, provenance)."""
    return f"{REPORTS}/appendix/{name}.{ext}"


def study_pdf() -> str:
    return f"{REPORTS}/study.pdf"


def report_file(name: str) -> str:
    return f"{REPORTS}/{name}"


# --- the codec study (codec_study.py): other codecs beside JPEG, on a bits-per-pixel axis ---

def codec_network(quality: int | str) -> str:
    """The learned codec's network of one quality (codecs/learned.py)."""
    return f"{RESULTS}/models/codecs/learned/q{quality}.pt"


def codec_finetuned(task: str, model: str, codec: str) -> str:
    """A task model fine-tuned on training images compressed by `codec` (JPEG's is finetuned())."""
    return f"{RESULTS}/models/{task}/{model}/finetune-{codec}.pt"


def pixel_corrector(codec: str, task: str | None = None, model: str | None = None) -> str:
    """The codec study's pixel-domain corrector (ARCNN, one network over the codec's qualities) trained on `codec`:
    off the shelf, or task-targeted on one task model."""
    where = f"{RESULTS}/models/correction/pixel/{codec}"
    return f"{where}/offtheshelf.pt" if task is None else f"{where}/ttac/{task}-{model}.pt"


def codec_metrics(codec: str, task: str, model: str, mitigation: str) -> str:
    return f"{RESULTS}/metrics/codecs/{codec}/{task}/{model}/{mitigation}.json"


def codec_predictions(codec: str, task: str, model: str, mitigation: str) -> str:
    return f"{RESULTS}/predictions/codecs/{codec}/{task}/{model}/{mitigation}"
