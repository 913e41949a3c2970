"""`jpegstudy audit FILE`: for every number in a generated table (LaTeX or its HTML page), figure or the study PDF,
where it came from.

Tables print numbers as \\jsrec{<row id>/<field>}{<text>} (a metric row) or \\jsdoc{torchvision:<weights>:<metric>}{<text>}
(torchvision's documented accuracy of those weights; csail:<pair>:<metric> for CSAIL's documented ADE20K values,
report/documented.py); a number derived from rows (the findings page) as \\jsdrop{<a>}{<b>}{<a - b>},
\\jsmeandrop{<a>-<b>,<a>-<b>...}{<mean of a - b>} or \\jsmeanrel{...}{<mean of 100 (a - b) / a>}, each <a>, <b> a
"<row id>/<field>" (report/findings.derived computes them, here as for the page). Figures and the PDF list the refs
they show in their metadata. Each ref is looked up among the metric files (or in torchvision's weights meta, or CSAIL's
table), a printed text must equal the value as the reports format it, and a row's content must still hash to its id
(an edited metric file is caught). A number in a table's tabular that is none of these is reported as untraced.
`jpegstudy audit <row id>` prints one row with its whole provenance record (the ids the study PDF's provenance
appendix lists)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from jpegstudy import atomic, provenance
from jpegstudy.report import documented as documented_refs
from jpegstudy.report.figures import INPUTS_KEY, RECORDS_KEY

PDF_RECORDS_KEY = "JpegstudyRecords"  # the study PDF's info key listing every ref it shows
from jpegstudy.report.findings import derived
from jpegstudy.report.metrics import fmt, index

JSREC = re.compile(r"\\jsrec\{([0-9a-f]+)/(\w+)\}\{([^}]*)\}")
JSDOC = re.compile(r"\\jsdoc\{((?:torchvision|csail):[\w.-]+):([\w@]+)\}\{([^}]*)\}")
_REF = r"[0-9a-f]+/\w+"
_PAIR = rf"{_REF}-{_REF}"
JSDROP = re.compile(rf"\\jsdrop\{{({_REF})\}}\{{({_REF})\}}\{{([^}}]*)\}}")
JSMEAN = re.compile(rf"\\jsmean(drop|rel)\{{({_PAIR}(?:,{_PAIR})*)\}}\{{([^}}]*)\}}")
JSRATE = re.compile(rf"\\jsrate\{{((?:within|bdrate):[0-9.]+)\}}\{{({_REF}(?:,{_REF})*)\}}\{{([^}}]*)\}}")
ROW_ID = re.compile(r"^[0-9a-f]{12}$")
COMMENT = re.compile(r"(?<!\\)%")  # a LaTeX comment starts at an unescaped %
NUMBER_CELL = re.compile(r"^\s*[-+]?\d+(?:\.\d+)?\s*$")
MARK = re.compile(r"\\(?:textbf|underline)\{([^{}]*)\}")  # the best (bold) and second (underlined) of a column


def derived_refs(text: str) -> list[tuple[str, list[tuple[str, str]], str]]:
    """(op, [(ref a, ref b)], printed text) of every \\jsdrop ("drop"), \\jsmeandrop and \\jsmeanrel."""
    found = [("drop", [(a, b)], printed) for a, b, printed in JSDROP.findall(text)]
    # a codec-study rate (report/rates.py): its refs travel as one tuple, the op with them
    found += [(f"rate|{op}", [tuple(refs.split(","))], printed) for op, refs, printed in JSRATE.findall(text)]
    return found + [(f"mean{kind}", [tuple(pair.split("-")) for pair in pairs.split(",")], printed)
                    for kind, pairs, printed in JSMEAN.findall(text)]


def table_refs(text: str) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """(id, field, printed text) of every \\jsrec and \\jsdoc, then (id, field, None) of each row a derived number
    is made of (the study PDF lists them among its records), and the plain numbers left in body cells."""
    refs = JSREC.findall(text) + JSDOC.findall(text)
    parts = dict.fromkeys(ref for _, pairs, _ in derived_refs(text) for pair in pairs for ref in pair)
    refs += [(*ref.split("/", 1), None) for ref in parts]
    untraced = []
    bodies = re.findall(r"\\begin\{(?:tabular|longtable)\}(.*?)\\end\{(?:tabular|longtable)\}", text, re.DOTALL)
    for line in "\n".join(bodies).splitlines():
        line = JSRATE.sub("", JSMEAN.sub("", JSDROP.sub("", JSDOC.sub("", JSREC.sub("", COMMENT.split(line)[0])))))
        line = MARK.sub(r"\1", line)  # a typed number in bold is still a typed number
        untraced += [c.strip() for c in line.rstrip("\\ ").split("&")[1:] if NUMBER_CELL.match(c)]
    return refs, untraced


HTML_REF = re.compile(r'<span data-ref="([^"]+)"[^>]*>([^<]*)</span>')


def html_refs(text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Like table_refs, for the HTML page of a table (report/table_html.py): refs are data-ref attributes."""
    refs = [(*_split_ref(html.unescape(ref)), html.unescape(printed)) for ref, printed in HTML_REF.findall(text)]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", HTML_REF.sub("", text), re.DOTALL)
    cells = [re.sub(r"</?[bu]>", "", c) for c in cells]  # bold, underlined: still a typed number
    return refs, [c.strip() for c in cells if NUMBER_CELL.match(c)]


def figure_refs(path: Path) -> list[tuple[str, str, None]]:
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            text = im.info.get(RECORDS_KEY, "")
    else:
        # a figure's refs are in its Keywords, the study PDF's in an info key of its own (hyperref owns Keywords)
        m = re.search(rb"/Keywords \(" + RECORDS_KEY.encode() + rb": ([^)]*)\)|/" + PDF_RECORDS_KEY.encode()
                      + rb" \(([^)]*)\)", path.read_bytes())
        text = next(g for g in m.groups() if g is not None).decode() if m else ""  # "" when it shows none
    return [(*_split_ref(ref), None) for ref in text.split()]


def figure_inputs(path: Path) -> dict:
    """The files an appendix figure (no metric row) was drawn from: {name: {path, sha256}}; {} for other files."""
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            text = im.info.get(INPUTS_KEY, "")
    else:  # the PDF's Subject; a PDF string escapes \, ( and )
        m = re.search(rb"/Subject \(" + INPUTS_KEY.encode() + rb": ((?:[^)\\]|\\.)*)\)", path.read_bytes())
        text = re.sub(r"\\(.)", r"\1", m.group(1).decode()) if m else ""
    return json.loads(text) if text else {}


def check_inputs(file: str, inputs: dict, verbose: bool) -> bool:
    """An appendix figure's audit: each file it was drawn from still has the sha256 it had then."""
    problems = 0
    for name, what in sorted(inputs.items()):
        if not Path(what["path"]).is_file():
            problems += 1
            print(f"MISSING  {name}: {what['path']} (drawn from sha256:{what['sha256'][:12]})")
        elif atomic.sha256_file(what["path"]) != what["sha256"]:
            problems += 1
            print(f"CHANGED  {name}: {what['path']} is no longer the file drawn from (sha256:{what['sha256'][:12]})")
        elif verbose:
            print(f"{'same':>8} {name}: {what['path']} sha256:{what['sha256'][:12]}")
    n = len(inputs)
    print(f"{file}: shows no metric numbers; {n - problems}/{n} of the files it was drawn from unchanged "
          f"({problems} problems)")
    return problems == 0


def _split_ref(ref: str) -> tuple[str, str]:
    """"<row id>/<field>", "torchvision:<weights>:<metric>" or "csail:<pair>:<metric>" -> (what, field)."""
    return tuple(ref.rsplit(":", 1)) if documented_refs.is_documented(ref) else tuple(ref.split("/", 1))


def documented(ref: str, field: str) -> float | None:
    """torchvision's documented `field` of the weights named in `ref` (ImageNet-1K acc@1, acc@5; COCO-val2017
    box_map, mask_map), CSAIL's of the pair a csail: ref names (miou, pixel_acc), or None."""
    if ref.startswith("csail:"):
        return documented_refs.csail_value(ref, field)
    import torchvision

    try:
        weights = torchvision.models.get_weight(ref.removeprefix("torchvision:"))
    except (ValueError, KeyError, AttributeError):
        return None
    for values in weights.meta.get("_metrics", {}).values():  # one dataset's metrics: their names do not overlap
        if field in values:
            return values[field]
    return None


def show_row(row_id: str, metrics_dir: str = "results/metrics") -> bool:
    """`jpegstudy audit <row id>` (the ids the study PDF links to): the row and its whole provenance record."""
    import json

    row = index(metrics_dir).get(row_id)
    if row is None:
        print(f"MISSING  {row_id}: no such metric row under {metrics_dir}")
        return False
    altered = provenance.row_id(row) != row_id
    print(("ALTERED  " if altered else "") + describe(row))
    shown = {k: v for k, v in row.items() if k != "per_image"}
    print(json.dumps(shown, indent=2, sort_keys=True))
    return not altered


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


def check_derived(op: str, pairs: list[tuple[str, str]], printed: str, rows: dict, metrics_dir: str,
                  verbose: bool) -> bool:
    """One derived number: every row it is made of exists and still hashes to its id, and the printed text is the
    number those rows give."""
    ok = True
    for ref in dict.fromkeys(ref for pair in pairs for ref in pair):
        row_id, field = ref.split("/", 1)
        row = rows.get(row_id)
        if row is None or row.get(field) is None:
            ok = False
            print(f"MISSING  {ref}: no such metric row under {metrics_dir} (part of a {op} printed {printed})")
        elif provenance.row_id(row) != row_id:
            ok = False
            print(f"ALTERED  {ref}: {row['source']} holds a row whose content no longer gives this id")
    if not ok:
        return False
    if op.startswith("rate|"):  # a codec-study rate: recomputed from the rows (metric and bits per pixel)
        from jpegstudy.report import rates

        refs = pairs[0]
        value = rates.rate_op(op.removeprefix("rate|"), [rows[r.split("/")[0]] for r in refs], refs[0].split("/")[1])
        if printed != value:
            print(f"MISMATCH {printed} printed, {value} is the {op} of {', '.join(refs)}")
            return False
        if verbose:
            print(f"{value:>8} {op} of {len(refs)} rows (metric and bits per pixel)")
        return True
    value = fmt(derived(op, [tuple(_value(rows, ref) for ref in pair) for pair in pairs]))
    if printed != value:
        print(f"MISMATCH {printed} printed, {value} is the {op} of {', '.join('-'.join(p) for p in pairs)}")
        return False
    if verbose:
        print(f"{value:>8} {op} of {len(pairs)} pair(s) (a - b):")
        for a, b in pairs:
            print(f"{'':>9}a {describe(rows[a.split('/')[0]])}\n{'':>9}b {describe(rows[b.split('/')[0]])}")
    return True


def _value(rows: dict, ref: str) -> float:
    row_id, field = ref.split("/", 1)
    return rows[row_id][field]


def audit(file: str, metrics_dir: str = "results/metrics", verbose: bool = True) -> bool:
    path = Path(file)
    if not path.is_file() and ROW_ID.match(file):
        return show_row(file, metrics_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{file}: no such file (nor a metric row id)")
    found = []  # derived numbers: a .tex's \\jsdrop, \\jsmeandrop and \\jsmeanrel
    if path.suffix == ".tex":
        refs, untraced = table_refs(path.read_text())
        found = derived_refs(path.read_text())
        refs = [ref for ref in refs if ref[2] is not None]  # a derived number's rows are checked with it, below
    elif path.suffix == ".html":
        refs, untraced = html_refs(path.read_text())
    elif path.suffix in (".pdf", ".png"):
        refs, untraced = figure_refs(path), []
        inputs = figure_inputs(path)
        if not refs and inputs:
            return check_inputs(file, inputs, verbose)
    else:
        raise ValueError(f"{file}: can audit .tex/.html tables and .pdf/.png figures")
    rows = index(metrics_dir)
    problems = 0
    for row_id, field, printed in refs:
        if documented_refs.is_documented(row_id):
            value = documented(row_id, field)
            source = row_id.split(":")[0]
            if value is None:
                problems += 1
                print(f"MISSING  {row_id}:{field}: {source} documents no such value")
            elif printed is not None and printed != fmt(value):
                problems += 1
                print(f"MISMATCH {printed} printed, {fmt(value)} documented by {row_id} {field}")
            elif verbose:
                where = "torchvision's weights meta" if source == "torchvision" else documented_refs.CSAIL_SOURCE
                print(f"{fmt(value):>8} {field:<5} documented by {row_id} ({where})")
            continue
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
    for op, pairs, printed in found:
        problems += not check_derived(op, pairs, printed, rows, metrics_dir, verbose)
    for number in untraced:
        problems += 1
        print(f"UNTRACED {number}: printed without a \\jsrec reference")
    n = len(refs) + len(found) + len(untraced)
    print(f"{file}: {n - problems}/{n} numbers traced to metric rows ({problems} problems)")
    return problems == 0 and n > 0
