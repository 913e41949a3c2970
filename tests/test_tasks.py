"""The task interface (jpegstudy.tasks): the registry, and what shared code asks of every task module."""

import re
from types import SimpleNamespace

import pytest
import torch

from jpegstudy import tasks
from jpegstudy.train.ttac import ttac_loss


def interface_names() -> list[str]:
    """The names tasks/__init__.py documents as the interface (the first word of each entry line)."""
    return re.findall(r"^    ([A-Za-z_]+)", tasks.__doc__, re.M)


def test_every_registered_task_has_the_whole_interface():
    names = interface_names()
    assert {"METRIC", "score", "ttac_target", "finetune_loss", "load_reference", "check_eval_set"} <= set(names)
    for name in tasks.TASKS:
        module = tasks.get(name)
        assert module.NAME == name
        assert [n for n in names if not hasattr(module, n)] == []


def test_an_unknown_task_is_one_line():
    with pytest.raises(ValueError, match=r"^unknown task 'depth': one of classification, detection, "
                                         r"segmentation, forensics$"):
        tasks.get("depth")


def test_classification_scores_batches_as_top1_and_top5():
    c = tasks.get("classification")
    logits = torch.tensor([[5.0, 1, 0, 0, 0, 0], [0, 5.0, 4, 3, 2, 1], [0, 1, 2, 3, 4, 5.0]])
    labels = torch.tensor([0, 2, 0])  # right; second-highest; lowest of six (outside the top 5)
    manifest = SimpleNamespace(images=[{"path": f"{i}.png", "label": int(y)} for i, y in enumerate(labels)])
    scores = c.score(lambda x: x, manifest, [(logits[:2], labels[:2]), (logits[2:], labels[2:])], "cpu",
                     {"resamples": 50, "seed": 0})
    assert scores["n_images"] == 3
    assert scores["top1"] == pytest.approx(100 / 3) and scores["top5"] == pytest.approx(200 / 3)
    assert scores["per_image"] == {"top1": "100", "top5": "110"}
    # the five most likely classes, best first (the first row's last four tie at 0: any order)
    assert [p["path"] for p in scores["predictions"]] == ["0.png", "1.png", "2.png"]
    assert [p["top5"] for p in scores["predictions"][1:]] == [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]
    assert scores["predictions"][0]["top5"][:2] == [0, 1]


def test_ttac_loss_averages_each_feature_level_alike():
    """Several levels (an FPN's): the mean over levels of each level's mean absolute difference."""
    images = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    corrected = torch.full((1, 3, 2, 2), 0.5)

    def levels(_, x):  # level 1: the input; level 2: its first pixel, times 4
        return {"p1": x, "p2": 4 * x[..., :1, :1]}

    loss = ttac_loss(levels, None, lambda x: x, lambda batch: corrected, images, None)
    assert loss.item() == pytest.approx((0.5 + 2.0) / 2)
    assert ttac_loss(lambda _, x: x, None, lambda x: x, lambda b: corrected, images, None).item() == pytest.approx(0.5)
