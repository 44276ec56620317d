"""Train the MNIST MLP in PyTorch: ``python -m host.train`` (``make train``).

Seeded and deterministic; the input is ``pixel / 255`` so that the int8 input
quantization (scale 1/255) is exact. Saves ``models/mlp.pt`` with its metadata.
"""

import argparse
import logging
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import DataError, load_mnist
from .files import atomic_write

__all__ = ["Mlp", "CheckpointError", "train", "save_checkpoint", "load_checkpoint",
           "DEFAULT_CHECKPOINT", "to_input"]

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


def save_checkpoint(model, meta, path):
    """Write to a temporary name, then rename."""
    with atomic_write(path) as f:
        torch.save({"format": "systolic-mnist-mlp", "state_dict": model.state_dict(),
                    "meta": meta}, f)


def load_checkpoint(path, sizes=None):
    """Load a checkpoint saved by :func:`save_checkpoint`; returns ``(model, meta)``.

    Raises
    ------
    CheckpointError
        The file is missing, not a checkpoint, or (with ``sizes``) of another shape.
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
    found = tuple(meta.get("sizes", ()))
    if sizes is not None and tuple(sizes) != found:
        raise CheckpointError(f"{path}: architecture {list(found)} does not match the "
                              f"expected {list(sizes)}")
    model = Mlp(found)
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not match architecture {list(found)}: "
                              f"{str(exc).splitlines()[0]}") from None
    model.eval()
    return model, meta


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
    if args.epochs < 1 or args.batch_size < 1 or any(h < 1 for h in args.hidden):
        print("error: --epochs, --batch-size and --hidden must be positive", file=sys.stderr)
        return 2
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        data = load_mnist(args.data_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model, meta = train(data, tuple(args.hidden), args.epochs, args.seed, args.lr,
                        args.batch_size)
    save_checkpoint(model, meta, args.out)
    print(f"trained {'-'.join(map(str, meta['sizes']))} on {data.describe()}")
    print(f"epochs {meta['epochs']}, {meta['train_seconds']:.1f} s, "
          f"train accuracy {meta['train_accuracy']:.4f}, test accuracy "
          f"{meta['test_accuracy']:.4f} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
