"""Figures (seaborn/matplotlib, PDF and PNG) made from metric rows alone.

Each figure carries the ids of the rows it plots in its metadata (PDF Keywords, PNG text chunk), so
`jpegstudy audit` works on figures as on tables. Dates are left out, so identical rows give identical files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: rules run on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from jpegstudy import atomic  # noqa: E402
from jpegstudy.report.metrics import frame  # noqa: E402

RECORDS_KEY = "jpegstudy-records"


def drops(df: pd.DataFrame, field: str) -> pd.DataFrame:
    """Reference metric minus the metric at each quality, per model: the paper's 'drop'."""
    out = []
    for (model, mitigation), rows in df.groupby(["model", "mitigation"], sort=False):
        clean = rows[rows["quality"].isna()]
        if clean.empty:
            raise ValueError(f"{model}: no clean (reference) row in {rows['source'].iloc[0]}")
        ref = clean.iloc[0]
        for _, r in rows.dropna(subset=["quality"]).iterrows():
            out.append({"model": model, "mitigation": mitigation, "quality": int(r["quality"]),
                        "drop": ref[field] - r[field], "refs": [f"{ref['id']}/{field}", f"{r['id']}/{field}"]})
    return pd.DataFrame(out)


def drop_figure(metric_files, outputs, params: dict | None = None) -> None:
    """The paper's Figure 3: drop in top-1 accuracy against JPEG quality, one line per model."""
    params = {"field": "top1", "width": 4.5, "height": 3.2, "dpi": 150, **(params or {})}
    d = drops(frame(metric_files), params["field"])
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(params["width"], params["height"]))
    sns.lineplot(data=d, x="quality", y="drop", hue="model", marker="o", ax=ax)
    ax.set_xlabel("JPEG quality")
    ax.set_ylabel(f"Drop in {'top-1' if params['field'] == 'top1' else params['field']} accuracy (points)")
    ax.set_xticks(sorted(d["quality"].unique()))
    ax.axhline(0, color="0.3", linewidth=0.8)
    fig.tight_layout()
    refs = " ".join(sorted({ref for refs in d["refs"] for ref in refs}))
    for out in outputs:
        out = Path(out)
        if out.suffix == ".pdf":
            metadata = {"Keywords": f"{RECORDS_KEY}: {refs}", "CreationDate": None, "Creator": "jpegstudy"}
        elif out.suffix == ".png":
            metadata = {RECORDS_KEY: refs, "Software": "jpegstudy"}
        else:
            raise ValueError(f"{out}: figures are written as .pdf or .png")
        with atomic.output_path(out) as tmp:
            fig.savefig(tmp, format=out.suffix[1:], dpi=params["dpi"], metadata=metadata)
    plt.close(fig)
