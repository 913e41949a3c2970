"""reports/study.pdf: a LaTeX skeleton that includes only generated pieces (tables, figures, appendices), built with
latexmk, in which every number links to its record in a provenance appendix.

Tables print numbers as \\jsrec{<row id>/<field>}{<value>}; here \\jsrec becomes a hyperlink to the row's anchor in
the provenance appendix (id, input sha256s, commit, rule, config keys), as showyourwork links a paper's numbers to
what made them. Figures are listed there with the rows they plot. The PDF's info dictionary lists every ref it
shows (/JpegstudyRecords), so `jpegstudy audit reports/study.pdf` checks them all.

A table wider than the text goes on landscape pages (pdflscape, from Debian's texlive-latex-recommended). The build
reads LaTeX's log and says, on stderr, how wide each overfull box is and where (the piece and its lines), so a piece
that runs off the page does not go unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jpegstudy import atomic
from jpegstudy.audit import PDF_RECORDS_KEY, figure_refs, table_refs
from jpegstudy.report import documented as documented_refs
from jpegstudy.report.metrics import read_rows
from jpegstudy.report.tables import environment, latex_escape

KINDS = ("table", "figure", "model", "gradcam", "qualitative", "tide", "example")
# Where each piece goes, and its title in the PDF. A piece is "kind:name" (or kind:name:model for per-model ones).
FIGURES = {
    "summary_tasks": "Drop at the lowest quality after fine-tuning against after TTAC, every model of every task; "
                     "marker: task, point size: throughput (Figure 1)",
    "drop_tasks": "Drop in each task's headline metric against JPEG quality, per model, without mitigation "
                  "(Figure 3)",
    "mitigation_tasks": "Drop in each task's headline metric against JPEG quality with each mitigation (Figure 4)",
    "multihead": "Each member model's own TTAC corrector against the multihead correctors of its groups (Figure 8)",
    "summary": "Classification: drop at the lowest quality after fine-tuning against after TTAC; point size: "
               "throughput (Figure 1, classification)",
    "drop": "Drop in top-1 accuracy against JPEG quality, per classifier, without mitigation (Figure 3, "
            "classification)",
    "mitigation": "Drop in top-1 accuracy against JPEG quality with each mitigation (Figure 4, classification)",
    "transfer": "Each classifier's own TTAC corrector against TTAC correctors transferred from other classifiers "
                "(Figure 7a)",
    "transfer_detection": "Each detector's own TTAC corrector against the classifiers' TTAC correctors: transfer "
                          "across tasks (Figure 7b)",
    "transfer_segmentation": "Each segmenter's own TTAC corrector against the classifiers' TTAC correctors: "
                             "transfer across tasks (Figure 7c)",
    "drop_detection": "Drop in box mAP against JPEG quality, per detector, without mitigation (Figure 3, detection)",
    "mitigation_detection": "Drop in box mAP against JPEG quality with each mitigation (Figure 4, detection)",
    "drop_segmentation": "Drop in mIoU against JPEG quality, per segmenter, without mitigation (Figure 3, "
                         "segmentation)",
    "mitigation_segmentation": "Drop in mIoU against JPEG quality with each mitigation (Figure 4, segmentation)",
    "drop_forensics": "Drop in real/fake accuracy against JPEG quality, per detector, without mitigation (Figure 6a)",
    "mitigation_forensics": "Drop in real/fake accuracy against JPEG quality with each mitigation (Figure 6b)",
    "forensics_spectrum": "Real and fake validation images and the mean spectra of their residuals: the traces of "
                          "the generator's upsampling",
    "throughput": "Throughput of each model alone and with each corrector (Figure 19)",
}
# The codec study's (report/rates.py; names as codec_study.figure_name, _classification dropped as for every figure)
for _task, _what in (("classification", "top-1 accuracy"), ("detection", "box mAP"), ("segmentation", "mIoU"),
                     ("forensics", "real/fake accuracy")):
    _name = "" if _task == "classification" else f"_{_task}"
    FIGURES[f"bpp{_name}"] = (f"{_task.capitalize()}: {_what} against bits per pixel, a curve per codec, without "
                              "mitigation; shaded: bootstrap intervals, dashed: clean")
    FIGURES[f"bpp_mitigations{_name}"] = (f"{_task.capitalize()}: {_what} against bits per pixel with each "
                                          "mitigation, a panel per codec")


PIECE_MARK = re.compile(r"jpegstudy piece: (\S*)$")
OVERFULL = re.compile(r"^Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\) (.*?)\s*$")


@dataclass(frozen=True)
class Overfull:
    """An overfull \\hbox in the study PDF: how much wider than its line it is, where (LaTeX's "in paragraph at
    lines 12--14", lines of the piece's file) and the piece it is in (or the skeleton, study.tex)."""
    width_pt: float
    where: str
    piece: str

    def __str__(self) -> str:
        return f"overfull \\hbox, {self.width_pt:g}pt too wide, {self.where} of {self.piece}"


def overfull_boxes(log: str, files: dict[str, str] | None = None, skeleton: str = "study.tex") -> list[Overfull]:
    """Every overfull \\hbox in a LaTeX log of the study, attributed to the piece it was set in. The skeleton marks
    where each piece starts and ends (\\jspiece, by its file name in the build folder); `files` maps those names to
    what to call them (the user's paths)."""
    files = files or {}
    boxes, piece = [], None
    for line in log.splitlines():
        mark = PIECE_MARK.search(line)
        if mark:
            piece = mark.group(1) or None
            continue
        found = OVERFULL.match(line)
        if found:
            boxes.append(Overfull(float(found.group(1)), found.group(2),
                                  files.get(piece, piece) if piece else skeleton))
    return boxes


def _breakable(text: str) -> str:
    """Escaped, and allowed to break after every / , = and : (paths, hashes and config values in narrow space)."""
    return re.sub(r"([/,=:])", r"\1\\allowbreak{}", latex_escape(text))


def _hashes(inputs: dict) -> dict:
    return {name: item["sha256"] for name, item in inputs.items()}


def provenance_groups(rows: list[dict]) -> list[dict]:
    """The provenance appendix's content: per metric file, what its rows share (rule, commit, versions, config,
    the inputs with one sha256 across the file) once, then each row with its own id, what it measured, its own
    inputs and its values."""
    groups = {}
    for row in rows:
        groups.setdefault(row["source"], []).append(row)
    out = []
    for source, members in groups.items():
        prov = [r["provenance"] for r in members]
        shared_inputs = {name: item for name, item in prov[0]["inputs"].items()
                         if all(p["inputs"].get(name, {}).get("sha256") == item["sha256"] for p in prov)}
        git = prov[0]["git"]
        config = prov[0]["config"]
        out.append({
            "source": source, "rule": prov[0]["rule"], "device": prov[0]["device"],
            "commit": (git.get("commit") or "no git") + (" (dirty tree)" if git.get("dirty") else ""),
            "versions": ", ".join(f"{k} {v}" for k, v in prov[0]["versions"].items()),
            "config": [(key, json.dumps(config[key], sort_keys=True)) for key in sorted(config)],
            "inputs": [(name, item["path"], item["sha256"]) for name, item in shared_inputs.items()],
            "same_config": all(p["config"] == config and p["rule"] == prov[0]["rule"] for p in prov),
            "rows": [{"id": r["id"], "what": _what(r),
                      "inputs": [(n, s) for n, s in _hashes(r["provenance"]["inputs"]).items()
                                 if n not in shared_inputs],
                      "numbers": _values(r)} for r in members]})
    return out


def _what(row: dict) -> str:
    if "images_per_s" in row:
        return (f"{row['model']} + {row['corrector'] or 'no corrector'}, {row['mode']}, batch {row['batch_size']}")
    quality = "clean" if row["quality"] is None else f"Q={row['quality']}"
    return f"{row['model']} {row['mitigation']} {quality}, {row['n_images']} images"


# The values a provenance entry lists of each row: every number the tables and figures can show of it.
RECORDED = ("top1", "top5", "map", "ap50", "ap75", "mask_ap", "mask_ap50", "mask_ap75", "miou", "pixel_acc",
            "accuracy", "image_accuracy", "patch_accuracy", "ap")


def _values(row: dict) -> str:
    fields = ["images_per_s"] if "images_per_s" in row else [
        f for name in RECORDED for f in (name, f"{name}_low", f"{name}_high") if row.get(f) is not None]
    return ", ".join(f"{f} {row[f]:.4f}" for f in fields)


def _pieces(pieces: dict[str, str]) -> dict:
    """{"table": {name: path}, "figure": {name: path}, "model": {model: path}, "gradcam": ..., "qualitative": ...}"""
    out = {kind: {} for kind in KINDS}
    for key, path in pieces.items():
        kind, _, name = key.partition(":")
        if kind not in out:
            raise ValueError(f"{key}={path}: unknown kind of piece {kind!r}; known: {', '.join(KINDS)}")
        out[kind][name] = path
    return out


def _tide_plots(tide: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """TIDE's summary plots by detector, {model: [(clean or Q=.., path)]}, from pieces tide:{model}:{clean,q10..}
    (tide:dap is the dAP figure)."""
    out: dict = {}
    for name, path in tide.items():
        if name != "dap":
            model, _, label = name.rpartition(":")
            out.setdefault(model, []).append(("clean" if label == "clean" else f"Q={label.removeprefix('q')}", path))
    return out


def render(pieces: dict[str, str], rows: list[dict], title: str) -> str:
    """The skeleton's LaTeX (pieces named by their file in the build folder), listing every ref it shows."""
    by_kind = _pieces(pieces)
    refs, figure_listing = [], []
    for kind, named in by_kind.items():
        for name, path in named.items():
            if kind == "table":
                found, untraced = table_refs(Path(path).read_text())
                if untraced:
                    raise ValueError(f"{path}: numbers without a record ({', '.join(untraced[:3])}): not a generated "
                                     "table")
                refs += [f"{what}:{field}" if documented_refs.is_documented(what) else f"{what}/{field}"
                         for what, field, _ in found]
            elif Path(path).suffix == ".pdf" and kind in ("figure", "model"):
                plotted = [f"{what}/{field}" for what, field, _ in figure_refs(Path(path))]
                refs += plotted
                figure_listing.append({"name": f"{kind}:{name}", "file": Path(path).name,
                                       "ids": sorted({r.split("/")[0] for r in plotted})})
    ids = {r.split("/")[0] for r in refs if not documented_refs.is_documented(r)}
    known = {row["id"] for row in rows}
    missing = sorted(ids - known)
    if missing:
        raise ValueError(f"rows {', '.join(missing[:3])} are shown but not among the metric files given")
    documented = [(r, documented_refs.describe(r)) for r in sorted(set(refs)) if documented_refs.is_documented(r)]
    env = environment()
    env.filters["path"] = _breakable
    tex = env.get_template("study.tex.j2").render(
        title=title, pieces=by_kind, figure_titles=FIGURES, records_key=PDF_RECORDS_KEY,
        records=" ".join(sorted(set(refs))), figures=figure_listing, documented=documented,
        groups=provenance_groups([r for r in rows if r["id"] in ids]), file_name=lambda p: Path(p).name,
        tide_plots=_tide_plots(by_kind["tide"]),
        codec_figures=[k for k in by_kind["figure"] if k == "bpp" or k.startswith("bpp_")])
    return tex


def build(pieces: dict[str, str], metric_files, out, title: str = "JPEG compression and deep learning: the study",
          keep_tex: str | None = None) -> list[Overfull]:
    """Copy the pieces into a scratch folder, render the skeleton beside them, run latexmk there, and move the PDF
    to `out` (atomically: a failed build leaves no PDF behind). Every overfull \\hbox of the last LaTeX pass is
    printed on stderr with its width and place, and returned."""
    if shutil.which("latexmk") is None:
        raise ValueError("latexmk is not installed (Debian: apt-get install latexmk texlive-latex-base "
                         "texlive-latex-recommended)")
    rows = read_rows(metric_files)
    with tempfile.TemporaryDirectory(prefix="study-") as tmp:
        tmp = Path(tmp)
        local, names = {}, {}
        for key, path in pieces.items():  # flat, TeX-safe names: no user path ever reaches TeX
            name = re.sub(r"[^A-Za-z0-9.-]", "-", key.replace(":", "-")) + Path(path).suffix
            shutil.copy(path, tmp / name)
            local[key] = str(tmp / name)
            names[name] = f"{key} ({path})"
        tex = render(local, rows, title)
        (tmp / "study.tex").write_text(tex)
        if keep_tex:
            atomic.write_text(keep_tex, tex)
        # a fixed date and trailer id: the same pieces give the same PDF, byte for byte
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1",
               "max_print_line": "10000"}  # log lines unwrapped, for overfull_boxes
        result = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "study.tex"],
                                cwd=tmp, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            log = (tmp / "study.log").read_text(errors="replace") if (tmp / "study.log").exists() else result.stdout
            error = next((line for line in log.splitlines() if line.startswith("!")), "see the log")
            raise ValueError(f"{out}: LaTeX failed: {error}")
        boxes = overfull_boxes((tmp / "study.log").read_text(errors="replace"), names, keep_tex or "study.tex")
        atomic.write_bytes(out, (tmp / "study.pdf").read_bytes())
    for box in boxes:
        print(f"{out}: {box}", file=sys.stderr)
    print(f"{out}: " + (f"{len(boxes)} overfull \\hbox(es), the widest {max(b.width_pt for b in boxes):g}pt"
                        if boxes else "no overfull \\hbox"), file=sys.stderr)
    return boxes
