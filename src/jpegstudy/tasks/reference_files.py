"""What the reference files of the tasks built on an embedded classifier (detection, segmentation) share: reading
one, the classifier its backbone is built from, and loading its weights into the rebuilt network."""

from __future__ import annotations

import torch

from jpegstudy.errors import ModelError


def read(path, task: str) -> dict:
    """A reference file's content, refused in one line unless it is `task`'s."""
    ref = torch.load(path, map_location="cpu", weights_only=True)
    if ref.get("task") != task:
        raise ModelError(f"{path}: not a {task} reference file")
    return ref


def backbone_fields(classifier_meta: dict) -> dict:
    """What a reference records of the classifier its backbone was made from: enough to build it again (its weights
    are in the reference's own state_dict)."""
    return {k: classifier_meta[k] for k in ("arch", "build_kwargs", "classes") if k in classifier_meta}


def backbone_classifier(ref: dict) -> torch.nn.Module | None:
    """The untrained classifier a reference's backbone was made from (its weights are in the reference's own
    state_dict), or None for a network built without one (the paper's)."""
    from jpegstudy.tasks import classification

    b = ref.get("backbone")
    return None if b is None else classification.build(b["arch"], len(b["classes"]), b.get("build_kwargs"))


def load_weights(model: torch.nn.Module, ref: dict, path) -> torch.nn.Module:
    """`model` in eval mode with the reference's weights; a key missing or left over is one line naming them."""
    missing, unexpected = model.load_state_dict(ref["state_dict"], strict=False)
    if missing or unexpected:
        keys = (missing or unexpected)[:3]
        raise ModelError(f"{path}: its weights do not fit {ref['arch']} ({'missing' if missing else 'unexpected'} "
                         f"keys {', '.join(keys)})")
    return model.eval()


def meta(ref: dict) -> dict:
    """Everything a reference records but its weights."""
    return {k: v for k, v in ref.items() if k != "state_dict"}
