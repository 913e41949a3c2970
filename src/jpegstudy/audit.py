"""`jpegstudy audit FILE`: for every number in a generated table or figure, the metric row it came from.

Tables print numbers as \\jsrec{<row id>/<field>}{<text>}; figures list the refs they plot in their metadata.
Each ref is looked up among the metric files, and a printed text must equal the row's value as the reports
format it, and the row's content must still hash to its id (an edited metric file is caught). A number in a
table's tabular that is not a \\jsrec is reported as untraced.
"""

from __future__ import annotations

import re
from pathlib import Path

from jpegstudy import provenance
from jpegstudy.report.figures import RECORDS_KEY
from jpegstudy.report.metrics import fmt, index

JSREC = re.compile(r"\\jsrec\{([0-9a-f]+)/(\w+)\}\{([^}]*)\}")
COMMENT = re.compile(r"(?<!\\)%")  # a LaTeX comment starts at an unescaped %
NUMBER_CELL = re.compile(r"^\s*[-+]?\d+(?:\.\d+)?\s*$")


def table_refs(text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(id, field, printed text) of every \\jsrec, and the plain numbers left in body cells."""
    refs = JSREC.findall(text)
    untraced = []
    bodies = re.findall(r"\\begin\{(?:tabular|longtable)\}(.*?)\\end\{(?:tabular|longtable)\}", text, re.DOTALL)
    for line in "\n".join(bodies).splitlines():
        line = JSREC.sub("", COMMENT.split(line)[0])
        untraced += [c.strip() for c in line.rstrip("\\ ").split("&")[1:] if NUMBER_CELL.match(c)]
    return refs, untraced


def figure_refs(path: Path) -> list[tuple[str, str, None]]:
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            text = im.info.get(RECORDS_KEY, "")
    else:
        m = re.search(rb"/Keywords \(" + RECORDS_KEY.encode() + rb": ([^)]*)\)", path.read_bytes())
        text = m.group(1).decode() if m else ""
    return [(*ref.split("/"), None) for ref in text.split()]


def describe(row: dict) -> str:
    prov = row["provenance"]
    inputs = " ".join(f"{k}=sha256:{v['sha256'][:12]}" for k, v in prov["inputs"].items())
    git = prov["git"]
    commit = (git["commit"] or "no-git")[:10] + ("+dirty" if git.get("dirty") else "")
    if "images_per_s" in row:  # a throughput row
        what = (f"{row['task']} {row['model']} + {row['corrector'] or 'no corrector'} {row['mode']} "
                f"batch={row['batch_size']}")
    else:
        quality = "clean" if row["quality"] is None else f"Q={row['quality']}"
        what = f"{row['task']} {row['model']} {row['mitigation']} {quality} n={row['n_images']}"
    return f"{what} <- {row['source']}#{row['id']} rule={prov['rule']} commit={commit} {inputs}"


def audit(file: str, metrics_dir: str = "results/metrics", verbose: bool = True) -> bool:
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    if path.suffix == ".tex":
        refs, untraced = table_refs(path.read_text())
    elif path.suffix in (".pdf", ".png"):
        refs, untraced = figure_refs(path), []
    else:
        raise ValueError(f"{file}: can audit .tex tables and .pdf/.png figures")
    rows = index(metrics_dir)
    problems = 0
    for row_id, field, printed in refs:
        row = rows.get(row_id)
        if row is None or field not in row:
            problems += 1
            print(f"MISSING  {row_id}/{field}: no such metric row under {metrics_dir}")
            continue
        value = fmt(row[field])
        if provenance.row_id(row) != row_id:
            problems += 1
            print(f"ALTERED  {row_id}/{field}: {row['source']} holds a row whose content no longer gives this id")
        elif printed is not None and printed != value:
            problems += 1
            print(f"MISMATCH {printed} printed, {value} in {row['source']}#{row_id} {field}")
        elif verbose:
            print(f"{value:>8} {field:<5} {describe(row)}")
    for number in untraced:
        problems += 1
        print(f"UNTRACED {number}: printed without a \\jsrec reference")
    n = len(refs) + len(untraced)
    print(f"{file}: {n - problems}/{n} numbers traced to metric rows ({problems} problems)")
    return problems == 0 and n > 0
