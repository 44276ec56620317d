"""The float networks and their checkpoint files (``models/mlp.pt``, ``models/cnn.pt``).

Two architectures, named in :data:`MODEL_NAMES`: :class:`Mlp` (the default) and the
LeNet-class :class:`Cnn`. A checkpoint is a ``torch.save`` dictionary with the state
dict and metadata; the metadata records a sha256 of the weights
(:func:`weights_sha256`) that :func:`load_checkpoint` checks, so an altered or damaged
file is refused, and for a CNN its ``model`` (``"cnn"``) and ``channels``.
"""

import hashlib
import itertools
import os

import numpy as np
import torch
from torch import nn

from ..files import atomic_write
from .bundled import DEFAULT_CHECKPOINTS, MODEL_NAMES, MODELS_DIR

__all__ = [
    "Mlp",
    "Cnn",
    "MODEL_NAMES",
    "DEFAULT_CHECKPOINTS",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "weights_sha256",
    "to_input",
    "DEFAULT_CHECKPOINT",
    "MODELS_DIR",
]

DEFAULT_CHECKPOINT = DEFAULT_CHECKPOINTS["mlp"]
_FORMATS = {"mlp": "systolic-mnist-mlp", "cnn": "systolic-mnist-cnn"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the expected network."""


class Mlp(nn.Module):
    """``784 -> hidden... -> 10`` with ReLU between the Linear layers."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(self.sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(self.sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    name = "mlp"

    @property
    def input_shape(self):
        return (self.sizes[0],)

    def forward(self, x):
        return self.net(x)

    def linears(self):
        return [m for m in self.net if isinstance(m, nn.Linear)]


class Cnn(nn.Module):
    """LeNet-class: ``[N, 784]`` (or ``[N, 1, 28, 28]``) -> two blocks of 3x3 Conv2d
    (padding 1), ReLU and 2x2 MaxPool2d -> Flatten -> Linear to 10 classes.

    Parameters
    ----------
    channels : (int, int)
        Output channels of the two convolutions (default 8 and 16: 784 features).
    """

    name = "cnn"
    input_shape = (1, 28, 28)

    def __init__(self, channels=(8, 16), classes: int = 10):
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.classes = int(classes)
        c1, c2 = self.channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, self.classes),
        )

    def forward(self, x):
        return self.net(x.reshape(-1, *self.input_shape))  # -1: no Shape op in ONNX

    def linears(self):
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def describe(self):
        c1, c2 = self.channels
        return f"cnn conv{c1}-conv{c2}-{self.classes}"


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 images ``[N, 784]`` -> float tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(images, np.float32) / 255.0)


def weights_sha256(state_dict: dict) -> str:
    """sha256 (hex) of a state dict: for each tensor, in sorted name order, its name, dtype,
    shape and raw bytes (native byte order, C order), so any changed weight changes it."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(
                f"state dict entry {name!r} is a {type(t).__name__}, not a tensor"
            )
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(model: nn.Module, meta: dict, path: str) -> None:
    """Write to a temporary name, then rename; the metadata gets ``weights_sha256``."""
    state = model.state_dict()
    meta = {**meta, "weights_sha256": weights_sha256(state)}
    if isinstance(model, Cnn):
        meta = {**meta, "model": "cnn", "channels": list(model.channels)}
    fmt = _FORMATS[getattr(model, "name", "mlp")]
    with atomic_write(path) as f:
        torch.save({"format": fmt, "state_dict": state, "meta": meta}, f)


def _sizes(path, meta):
    found = meta.get("sizes") if isinstance(meta, dict) else None
    if (
        not isinstance(found, (list, tuple))
        or len(found) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in found)
    ):
        raise CheckpointError(
            f"{path}: metadata 'sizes' must list at least two positive layer widths, not {found!r}"
        )
    return tuple(found)


def _channels(path, meta):
    found = meta.get("channels")
    if (
        not isinstance(found, list)
        or len(found) != 2
        or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in found)
    ):
        raise CheckpointError(
            f"{path}: metadata 'channels' must list two positive channel counts, not {found!r}"
        )
    return tuple(found)


def load_checkpoint(path: str, sizes: tuple | None = None) -> tuple[nn.Module, dict]:
    """Load a checkpoint saved by :func:`save_checkpoint`; returns ``(model, meta)``, the
    model an :class:`Mlp` or a :class:`Cnn` as the file says.

    Raises
    ------
    CheckpointError
        The file is missing, not a checkpoint, has no recorded weights hash or weights
        that do not match it (an altered or damaged file), or (with ``sizes``, an MLP's
        widths) is of another shape.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt not in _FORMATS.values():
        raise CheckpointError(f"{path}: not a systolic-mnist MLP or CNN checkpoint")
    meta = blob.get("meta", {})
    if fmt == _FORMATS["cnn"]:
        meta = meta if isinstance(meta, dict) else {}
        found = _channels(path, meta)
        if sizes is not None:
            raise CheckpointError(
                f"{path}: a CNN checkpoint, expected an MLP of widths {list(sizes)}"
            )
    else:
        found = _sizes(path, meta)
    if sizes is not None and tuple(sizes) != found:
        raise CheckpointError(
            f"{path}: architecture {list(found)} does not match the expected {list(sizes)}"
        )
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state dict")
    recorded = meta.get("weights_sha256")
    if not isinstance(recorded, str):
        raise CheckpointError(
            f"{path}: no recorded weights hash (weights_sha256); save it "
            f"again with systolic.host.nn.checkpoint.save_checkpoint or retrain (make train)"
        )
    try:
        actual = weights_sha256(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if actual != recorded:
        raise CheckpointError(
            f"{path}: weights do not match their recorded hash (the file was altered or damaged)"
        )
    model = Cnn(found) if fmt == _FORMATS["cnn"] else Mlp(found)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        what = f"CNN channels {list(found)}" if isinstance(model, Cnn) else list(found)
        raise CheckpointError(
            f"{path}: weights do not match architecture {what}: {str(exc).splitlines()[0]}"
        ) from None
    model.eval()
    return model, meta
