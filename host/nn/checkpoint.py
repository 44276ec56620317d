"""The float network and its checkpoint file (``models/mlp.pt``).

A checkpoint is a ``torch.save`` dictionary with the state dict and metadata; the
metadata records a sha256 of the weights (:func:`weights_sha256`) that
:func:`load_checkpoint` checks, so an altered or damaged file is refused.
"""

import hashlib
import itertools
import os

import numpy as np
import torch
from torch import nn

from ..files import atomic_write

__all__ = [
    "Mlp",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "weights_sha256",
    "to_input",
    "DEFAULT_CHECKPOINT",
    "MODELS_DIR",
]

#: The checked-in models (relative to the working directory, as the CLI prints paths).
MODELS_DIR = os.path.relpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "models")
)
DEFAULT_CHECKPOINT = os.path.join(MODELS_DIR, "mlp.pt")


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

    def forward(self, x):
        return self.net(x)

    def linears(self):
        return [m for m in self.net if isinstance(m, nn.Linear)]


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
    with atomic_write(path) as f:
        torch.save({"format": "systolic-mnist-mlp", "state_dict": state, "meta": meta}, f)


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


def load_checkpoint(path: str, sizes: tuple | None = None) -> tuple["Mlp", dict]:
    """Load a checkpoint saved by :func:`save_checkpoint`; returns ``(model, meta)``.

    Raises
    ------
    CheckpointError
        The file is missing, not a checkpoint, has no recorded weights hash or weights
        that do not match it (an altered or damaged file), or (with ``sizes``) is of
        another shape.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != "systolic-mnist-mlp":
        raise CheckpointError(f"{path}: not a systolic-mnist MLP checkpoint")
    meta = blob.get("meta", {})
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
            f"again with host.nn.checkpoint.save_checkpoint or retrain (make train)"
        )
    try:
        actual = weights_sha256(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if actual != recorded:
        raise CheckpointError(
            f"{path}: weights do not match their recorded hash (the file was altered or damaged)"
        )
    model = Mlp(found)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: weights do not match architecture {list(found)}: {str(exc).splitlines()[0]}"
        ) from None
    model.eval()
    return model, meta
