"""``python -m host train``: train the MNIST MLP (or, with ``--model cnn``, the CNN) and
save its checkpoint."""

import argparse
import math
import os
import sys

import torch

from ..files import check_output_path
from ..nn.checkpoint import DEFAULT_CHECKPOINTS, MODEL_NAMES, save_checkpoint
from ..nn.data import load_mnist
from ..nn.train import train

__all__ = ["main"]

#: Learning rate per architecture when --lr is not given.
DEFAULT_LR = {"mlp": 1e-3, "cnn": 3e-3}


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m host train",
        description="Train the MNIST MLP or CNN in PyTorch (seeded, deterministic).",
    )
    p.add_argument(
        "--model", choices=MODEL_NAMES, default=MODEL_NAMES[0], help="architecture (default mlp)"
    )
    p.add_argument("--hidden", type=int, nargs="+", default=[128], help="hidden layer sizes (mlp)")
    p.add_argument(
        "--channels", type=int, nargs=2, default=[8, 16], help="conv output channels (cnn)"
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lr", type=float, default=None, help="default: 1e-3 for the mlp, 3e-3 for the cnn"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-dir", default=None, help="MNIST IDX files (default: embedded subset)")
    p.add_argument(
        "--out",
        default=None,
        help="default: build/models/<model>.pt (the checked-in models/<model>.pt is "
        "replaced only when named here)",
    )
    args = p.parse_args(argv)
    args.out = args.out or os.path.join("build", "models", f"{args.model}.pt")
    args.lr = DEFAULT_LR[args.model] if args.lr is None else args.lr
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        for name in ("epochs", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be positive, not {getattr(args, name)}"
                )
        if any(h < 1 for h in args.hidden):
            raise ValueError(f"--hidden sizes must be positive, not {args.hidden}")
        if any(c < 1 for c in args.channels):
            raise ValueError(f"--channels must be positive, not {args.channels}")
        if not (math.isfinite(args.lr) and args.lr > 0):
            raise ValueError(f"--lr must be a positive finite number, not {args.lr}")
        check_output_path(args.out, "--out")
        data = load_mnist(args.data_dir)
        model, meta = train(
            data,
            tuple(args.hidden),
            args.epochs,
            args.seed,
            args.lr,
            args.batch_size,
            model=args.model,
            channels=tuple(args.channels),
        )
        save_checkpoint(model, meta, args.out)
    except (OSError, ValueError) as exc:  # DataError and CheckpointError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = model.describe() if args.model == "cnn" else "-".join(map(str, meta["sizes"]))
    print(f"trained {what} on {data.describe()}")
    print(
        f"epochs {meta['epochs']}, {meta['train_seconds']:.1f} s, "
        f"train accuracy {meta['train_accuracy']:.4f}, test accuracy "
        f"{meta['test_accuracy']:.4f} -> {args.out}"
    )
    if os.path.abspath(args.out) != os.path.abspath(DEFAULT_CHECKPOINTS[args.model]):
        print(f"use it with --model {args.out} (models/{args.model}.pt is unchanged)")
    return 0
