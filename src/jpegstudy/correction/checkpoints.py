"""Load correction-network weights written elsewhere: a plain state_dict, or a PyTorch-Lightning checkpoint.

Lightning checkpoints carry the weights under "state_dict" with the attribute name of the network in the training
module as a key prefix ("model.", "network.", ...), next to "hyper_parameters", optimizer states and the like, which
may hold objects of classes from the training code. We never need those objects and must never run foreign code
to read the weights, so:

1. torch.load(weights_only=True): torch's restricted unpickler, which rebuilds tensors and a short allowlist of
   types and refuses any other global.
2. Only if that refuses the file (pickle.UnpicklingError): load again with our own restricted unpickler. Its
   find_class hands out exactly the globals that torch's weights_only loader trusts and replaces every other one
   (the training code's classes, but also os.system or eval in a malicious file) by an inert ForeignObject type
   that only records what the file said. torch.serialization.safe_globals cannot do this in torch 2.14: it needs
   the real objects, and even with stand-in classes registered under the right names, the weights_only unpickler
   refuses SETITEMS on anything but dict/OrderedDict/Counter, so a pickled dict subclass (common in hyper-parameter
   containers) still fails. A custom pickle_module requires weights_only=False; that is safe here because every
   global the pickle names goes through our find_class, and nothing else in pickle can reach foreign code.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import _weights_only_unpickler, nn

# Where checkpoints keep their weights, in the order we look.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "network", "net")


class ForeignObject:
    """Stands in for an object whose class or function is unknown or untrusted here; keeps what the file stored."""

    _foreign_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.elements = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, item):
        self.elements.append(item)

    def extend(self, items):
        self.elements.extend(items)

    def __repr__(self):
        return f"<{self._foreign_name}, not loaded>"


_foreign_types: dict[str, type] = {}


def _foreign_type(module: str, name: str) -> type:
    full = f"{module}.{name}"
    if full not in _foreign_types:
        _foreign_types[full] = type(name.rsplit(".", 1)[-1], (ForeignObject,),
                                    {"__module__": module, "__qualname__": name, "_foreign_name": full})
    return _foreign_types[full]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # torch's own allowlist for weights_only loads (tensor rebuilders, storages, dtypes, OrderedDict, ...)
        trusted = _weights_only_unpickler._get_allowed_globals().get(f"{module}.{name}")
        return trusted if trusted is not None else _foreign_type(module, name)


def _restricted_pickle_module() -> types.ModuleType:
    mod = types.ModuleType("jpegstudy_restricted_pickle")
    mod.Unpickler = _RestrictedUnpickler
    mod.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()
    return mod


def _read(path: Path, what: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # unknown globals (e.g. Lightning hyper-parameters): read again with foreign objects stubbed out
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; the user needs the file and the first line
        raise ValueError(f"{path}: cannot read {what} ({_first_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle_module())
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: cannot read {what} ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _is_weights(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _split(obj, path: Path, what: str) -> tuple[dict, dict]:
    """(state_dict, other top-level entries) of what torch.load returned."""
    if _is_weights(obj):
        return dict(obj), {}
    if not isinstance(obj, Mapping):
        raise ValueError(  # noqa: TRY004 - a bad file, not a bad argument: same kind as a mismatched checkpoint
            f"{path}: {what}: expected a state_dict or a checkpoint dict, found {type(obj).__name__}")
    for key in STATE_DICT_KEYS:
        if _is_weights(obj.get(key)):
            return dict(obj[key]), {k: v for k, v in obj.items() if k != key}
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors:  # weights and other entries side by side at the top level
        return tensors, {k: v for k, v in obj.items() if k not in tensors}
    raise ValueError(f"{path}: {what}: no weights found (top-level keys: {', '.join(map(str, obj))})")


def _strip_prefix(state: dict, wanted: Mapping) -> dict:
    """Drop the one key prefix (e.g. "model." in a Lightning checkpoint) under which the keys fit the network best.

    Keys outside the chosen prefix belong to other parts of a training module (a loss network, an EMA copy) and are
    left out; keys under it must then match the network exactly.
    """
    prefixes = {""} | {k[: i + 1] for k in state for i, ch in enumerate(k) if ch == "."}

    def fit(prefix):
        return sum(k.startswith(prefix) and k[len(prefix):] in wanted for k in state)

    best = max(sorted(prefixes, key=len), key=fit)  # the shortest among the best fits
    return {k[len(best):]: v for k, v in state.items() if k.startswith(best)}


def load_state_dict(path, model: nn.Module, what: str) -> dict:
    """Load the weights of the file at `path` into `model` and return the file's other top-level entries.

    Accepts a plain state_dict or a checkpoint dict (Lightning or other) holding one under a known key; a common key
    prefix is stripped. A file that does not fit the network exactly is refused with a one-line ValueError naming the
    file and the first offending key. `what` names the weights in messages ("QGAC weights"). The returned entries
    (e.g. "stats" or "frequency_stats" with QGAC's DCT statistics, "hyper_parameters") may contain ForeignObjects
    where the file pickled objects of classes that are not available or not trusted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file ({what})")
    state, extras = _split(_read(path, what), path, what)
    wanted = model.state_dict()
    state = _strip_prefix(state, wanted)
    problems = []
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    for kind, keys in (("missing key", missing), ("unexpected key", unexpected)):
        if keys:
            problems.append(f"{kind} {keys[0]}" + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""))
    if problems:
        raise ValueError(f"{path}: {what}: {'; '.join(problems)}")
    for k, v in wanted.items():
        if state[k].shape != v.shape:
            raise ValueError(f"{path}: {what}: {k} has shape {list(state[k].shape)}, "
                             f"the network {list(v.shape)}")
    model.load_state_dict(state)
    return extras
