"""Appendix C of the paper: qualitative results. For each fixed validation image (report.samples; samples.select
says which) one row: the JPEG at the lowest quality of the study, the off-the-shelf QGAC output, the model's TTAC
output, the fine-tuned model on the JPEG (the JPEG is what it sees) and the original, each mitigation only if the
study asks for it. Each panel is titled with the class its model predicts on it (the manifest's class name), with
the softmax probability, marked ✓ (the true class) or ✗.
"""

from __future__ import annotations

import numpy as np

from jpegstudy.report import samples as samples_

COLUMNS = ("jpeg", "offtheshelf", "ttac", "finetune", "original")  # the paper's order in appendix C


def draw(material: samples_.Material, model_name: str) -> samples_.PanelGrid:
    """The figure of `material`, one row per sample, the columns in COLUMNS order (those it has)."""
    shown = {p.column for p in material.samples[0].panels}
    columns = [c for c in COLUMNS if c in shown]
    grid = samples_.PanelGrid(material, rows_per_sample=1, columns=columns,
                              title=f"{model_name}: predicted class of each input (✓ true class, ✗ not)")
    for s, sample in enumerate(material.samples):
        for c, column in enumerate(columns):
            panel = grid.column_of(sample, column)
            ax = grid.axes[s][0][c]
            grid.show(ax, np.asarray(panel.image))
            grid.prediction_title(ax, panel, sample.label)
        grid.sample_label(s, sample)
    return grid


def qualitative_figure(**kwargs) -> None:
    """Write the appendix C figure of one model (keyword arguments: samples.write_figure's)."""
    samples_.write_figure(draw, **kwargs)
