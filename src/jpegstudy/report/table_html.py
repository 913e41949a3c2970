"""An HTML page of a generated LaTeX table, for snakemake's report (which shows HTML and images, not LaTeX).

Pandoc reads plain tabulars but drops our longtables and \\resizebox-ed tables as paragraphs of "&" (tried with
pypandoc-binary 1.13), so this reads the one LaTeX dialect our table templates write: booktabs rules, a row per
`\\\\`, cells split at unescaped `&`, and a few macros (\\jsrec, \\jsdoc, \\jsci, \\multicolumn, \\textbf, \\underline, \\texttt).
An unknown macro is an error, not silently dropped text. Each number keeps its ref as a data-ref attribute, so
`jpegstudy audit` traces the HTML page as it does the LaTeX."""

from __future__ import annotations

import html
import re

COMMENT = re.compile(r"(?<!\\)%.*")
MACRO = re.compile(r"\\([A-Za-z]+|.)")
RULES = re.compile(r"\\(?:toprule|midrule|bottomrule|cmidrule(?:\([a-z]*\))?\{[^}]*\}|endfirsthead|endhead|endfoot"
                   r"|endlastfoot)")
SYMBOLS = {"%": "%", "_": "_", "&": "&", "#": "#", "$": "$", "{": "{", "}": "}", ",": "\u2009", " ": " "}
IGNORED = {"raggedright", "allowbreak", "thetable"}
WRAPS = {"textbf": "b", "underline": "u", "texttt": "code", "emph": "em"}
STYLE = """body{font-family:sans-serif;font-size:14px;margin:1em}
table{border-collapse:collapse}caption{caption-side:top;text-align:left;max-width:60em;margin-bottom:.6em}
th,td{padding:.15em .6em;text-align:left;vertical-align:top}thead tr:last-child th{border-bottom:1px solid #000}
table{border-top:2px solid #000;border-bottom:2px solid #000}tr.rule td,tr.rule th{border-top:1px solid #000}
td.num{text-align:right;font-variant-numeric:tabular-nums}.ci{font-size:80%;color:#555}
span[data-ref]{cursor:help}"""


def braced(tex: str, start: int) -> tuple[str, int]:
    """The content of the {group} opening at tex[start], and the index just past its closing brace."""
    if start >= len(tex) or tex[start] != "{":
        raise ValueError(f"expected {{ at {tex[start:start + 30]!r}")
    depth = 0
    for i in range(start, len(tex)):
        if tex[i] == "\\":
            continue
        if tex[i] == "{" and tex[i - 1] != "\\":
            depth += 1
        elif tex[i] == "}" and tex[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return tex[start + 1:i], i + 1
    raise ValueError(f"unbalanced braces in {tex[start:start + 60]!r}")


def inline(tex: str) -> str:
    """A LaTeX fragment (a cell, a caption) as HTML."""
    out, i = [], 0
    while i < len(tex):
        if tex[i] == "\\":
            m = MACRO.match(tex, i)
            name, i = m.group(1), m.end()
            if name in ("jsrec", "jsdoc"):
                ref, i = braced(tex, i)
                text, i = braced(tex, i)
                out.append(f'<span data-ref="{html.escape(ref)}" title="{html.escape(ref)}">{inline(text)}</span>')
            elif name == "jsci":
                low, i = braced(tex, i)
                high, i = braced(tex, i)
                out.append(f'<span class="ci">[{inline(low)}, {inline(high)}]</span>')
            elif name in WRAPS:
                text, i = braced(tex, i)
                out.append(f"<{WRAPS[name]}>{inline(text)}</{WRAPS[name]}>")
            elif name in SYMBOLS:
                out.append(html.escape(SYMBOLS[name]))
            elif name in IGNORED:
                i += 2 if tex.startswith("{}", i) else 0
                i += 1 if tex.startswith(" ", i) and name == "raggedright" else 0
            else:
                raise ValueError(f"\\{name}: a macro the HTML tables do not know")
        elif tex[i] in "{}":
            i += 1
        elif tex.startswith("--", i):
            out.append("\u2013")
            i += 2
        else:
            out.append(html.escape("\u00a0" if tex[i] == "~" else tex[i]))
            i += 1
    return " ".join("".join(out).split())


def split_cells(row: str) -> list[str]:
    """A row's cells: split at & outside braces and not escaped."""
    cells, depth, start = [], 0, 0
    for i, c in enumerate(row):
        escaped = i > 0 and row[i - 1] == "\\"
        if c == "{" and not escaped:
            depth += 1
        elif c == "}" and not escaped:
            depth -= 1
        elif c == "&" and depth == 0 and not escaped:
            cells.append(row[start:i])
            start = i + 1
    return [*cells, row[start:]]


def cell(tex: str, tag: str) -> str:
    tex = tex.strip()
    span = ""
    if tex.startswith("\\multicolumn"):
        columns, i = braced(tex, len("\\multicolumn"))
        _, i = braced(tex, i)  # the column spec
        tex, _ = braced(tex, i)
        span = f' colspan="{int(columns)}"'
    content = inline(tex)
    number = ' class="num"' if tag == "td" and "data-ref" in content else ""
    return f"<{tag}{span}{number}>{content}</{tag}>"


def rows(part: str, tag: str) -> list[str]:
    """The <tr>s of a run of LaTeX rows; a \\midrule before a row draws a line above it."""
    out = []
    for chunk in re.split(r"\\\\\*?", part):
        ruled = "\\midrule" in chunk
        chunk = re.sub(r"\\label\{[^}]*\}", "", RULES.sub("", chunk)).strip()
        if not chunk:
            continue
        cls = ' class="rule"' if ruled and out else ""
        out.append(f"<tr{cls}>" + "".join(cell(c, tag) for c in split_cells(chunk)) + "</tr>")
    return out


def table_html(tex: str, title: str) -> str:
    """The page of one generated LaTeX table (tabular or longtable): its caption, header rows and body rows."""
    tex = "\n".join(COMMENT.sub("", line) for line in tex.splitlines())
    caption = ""
    if "\\caption{" in tex:
        start = tex.index("\\caption{") + len("\\caption")
        text, end = braced(tex, start)
        caption = inline(text)
        tex = tex[:start - len("\\caption")] + tex[end:]
    body = re.search(r"\\begin\{(tabular|longtable)\}(.*?)\\end\{\1\}", tex, re.DOTALL)
    if body is None:
        raise ValueError(f"{title}: no tabular or longtable")
    text = body.group(2).lstrip()
    text = text[braced(text, 0)[1]:]  # past the column spec
    if "\\endfirsthead" in text:  # longtable: the first head, then (past the repeated head and foot) the body
        head, rest = text.split("\\endfirsthead", 1)
        body_part = rest.split("\\endlastfoot", 1)[1]
    else:  # tabular: the rows above the first \midrule are the head
        head, body_part = text.split("\\midrule", 1)
    header = rows(head, "th")
    if not header:
        raise ValueError(f"{title}: a table without header row")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n<table>\n<caption>{caption}</caption>\n"
            "<thead>\n" + "\n".join(header) + "\n</thead>\n<tbody>\n" + "\n".join(rows(body_part, "td"))
            + "\n</tbody>\n</table>\n<p>Hover a number for its record (row id/field); <code>jpegstudy audit "
            "&lt;row id&gt;</code> prints the whole record.</p>\n</body></html>\n")
