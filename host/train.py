"""Train the MNIST MLP in PyTorch: ``python -m host.train`` (``make train``).

Seeded and deterministic; the input is ``pixel / 255`` so that the int8 input
quantization (scale 1/255) is exact. Saves ``models/mlp.pt`` with its metadata, which
records a sha256 of the weights that :func:`load_checkpoint` checks.
"""

import argparse
import hashlib
import logging
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import load_mnist
from .files import atomic_write

__all__ = ["Mlp", "CheckpointError", "train", "save_checkpoint", "load_checkpoint",
           "weights_sha256", "check_output_path", "DEFAULT_CHECKPOINT", "to_input"]

log = logging.getLogger(__name__)
DEFAULT_CHECKPOINT = os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  os.pardir, "models", "mlp.pt"))


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the expected network."""


class Mlp(nn.Module):
    """``784 -> hidden... -> 10`` with ReLU between the Linear layers."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        layers = []
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(self.sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

    def linears(self):
        return [m for m in self.net if isinstance(m, nn.Linear)]


def to_input(images):
    """uint8 images ``[N, 784]`` -> float tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(images, np.float32) / 255.0)


def accuracy(model, images, labels, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            pred = model(to_input(images[i:i + batch])).argmax(1).numpy()
            correct += int((pred == labels[i:i + batch]).sum())
    return correct / len(images)


def train(data, hidden=(128,), epochs=10, seed=0, lr=1e-3, batch_size=64, progress=True):
    """Train an MLP on ``data``; returns ``(model, metadata)``."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(data, hidden, epochs, seed, lr, batch_size, progress)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _train(data, hidden, epochs, seed, lr, batch_size, progress):
    torch.manual_seed(seed)
    model = Mlp((784, *hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = to_input(data.train_images), torch.from_numpy(data.train_labels)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="train", unit="epoch", disable=not progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - start
    meta = {
        "sizes": list(model.sizes), "seed": seed, "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "data": data.source, "train_images": len(x),
        "test_images": len(data.test_images),
        "test_accuracy": accuracy(model, data.test_images, data.test_labels),
        "train_accuracy": accuracy(model, data.train_images, data.train_labels),
        "train_seconds": seconds, "torch_version": str(torch.__version__),
    }
    return model, meta


def weights_sha256(state_dict):
    """sha256 (hex) of a state dict: for each tensor, in sorted name order, its name, dtype,
    shape and raw bytes (native byte order, C order), so any changed weight changes it."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"state dict entry {name!r} is a {type(t).__name__}, "
                                  f"not a tensor")
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(model, meta, path):
    """Write to a temporary name, then rename; the metadata gets ``weights_sha256``."""
    state = model.state_dict()
    meta = {**meta, "weights_sha256": weights_sha256(state)}
    with atomic_write(path) as f:
        torch.save({"format": "systolic-mnist-mlp", "state_dict": state, "meta": meta}, f)


def _sizes(path, meta):
    found = meta.get("sizes") if isinstance(meta, dict) else None
    if not isinstance(found, (list, tuple)) or len(found) < 2 or \
            not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in found):
        raise CheckpointError(f"{path}: metadata 'sizes' must list at least two positive "
                              f"layer widths, not {found!r}")
    return tuple(found)


def load_checkpoint(path, sizes=None):
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
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") \
            from None
    if not isinstance(blob, dict) or blob.get("format") != "systolic-mnist-mlp":
        raise CheckpointError(f"{path}: not a systolic-mnist MLP checkpoint")
    meta = blob.get("meta", {})
    found = _sizes(path, meta)
    if sizes is not None and tuple(sizes) != found:
        raise CheckpointError(f"{path}: architecture {list(found)} does not match the "
                              f"expected {list(sizes)}")
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state dict")
    recorded = meta.get("weights_sha256")
    if not isinstance(recorded, str):
        raise CheckpointError(f"{path}: no recorded weights hash (weights_sha256); save it "
                              f"again with host.train.save_checkpoint or retrain (make train)")
    try:
        actual = weights_sha256(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if actual != recorded:
        raise CheckpointError(f"{path}: weights do not match their recorded hash (the file "
                              f"was altered or damaged)")
    model = Mlp(found)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not match architecture {list(found)}: "
                              f"{str(exc).splitlines()[0]}") from None
    model.eval()
    return model, meta


def check_output_path(path, option):
    """Check, before any work, that ``path`` can be written (by ``atomic_write``).

    Nothing is created: the file must not be a directory, and the nearest existing
    directory above it must be a directory we can create files in (a probe file is
    made there and removed).

    Raises
    ------
    ValueError
        Naming ``option`` and the path, with what is wrong.
    """
    if not path:
        raise ValueError(f"{option}: empty path")
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise ValueError(f"{option} {path}: is a directory")
    parent = os.path.dirname(full)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path}: cannot create a directory under {parent}, "
                         f"which is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot write in {parent} "
                         f"({exc.strerror or type(exc).__name__})") from None
    if os.path.exists(full) and not os.access(full, os.W_OK):
        raise ValueError(f"{option} {path}: file is not writable")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host.train", description=__doc__)
    p.add_argument("--hidden", type=int, nargs="+", default=[128], help="hidden layer sizes")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-dir", default=None, help="MNIST IDX files (default: embedded subset)")
    p.add_argument("--out", default="models/mlp.pt")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        for name in ("epochs", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, "
                                 f"not {getattr(args, name)}")
        if any(h < 1 for h in args.hidden):
            raise ValueError(f"--hidden sizes must be positive, not {args.hidden}")
        if not (math.isfinite(args.lr) and args.lr > 0):
            raise ValueError(f"--lr must be a positive finite number, not {args.lr}")
        check_output_path(args.out, "--out")
        data = load_mnist(args.data_dir)
        model, meta = train(data, tuple(args.hidden), args.epochs, args.seed, args.lr,
                            args.batch_size)
        save_checkpoint(model, meta, args.out)
    except (OSError, ValueError) as exc:   # DataError and CheckpointError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {'-'.join(map(str, meta['sizes']))} on {data.describe()}")
    print(f"epochs {meta['epochs']}, {meta['train_seconds']:.1f} s, "
          f"train accuracy {meta['train_accuracy']:.4f}, test accuracy "
          f"{meta['test_accuracy']:.4f} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
