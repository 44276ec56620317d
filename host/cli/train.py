"""``systolic train``: train the MNIST MLP (or the CNN) and save its checkpoint."""

import math
import os

import click

from systolic.hw.cli import CONTEXT_SETTINGS, CliError, run

from ..files import check_output_path
from ..nn.bundled import DEFAULT_CHECKPOINTS, MODEL_NAMES
from .options import check_positive, data_dir_option, torch_threads

__all__ = ["DEFAULT_LR", "command", "main"]

#: Learning rate per architecture when --lr is not given.
DEFAULT_LR = {"mlp": 1e-3, "cnn": 3e-3}


def _sizes(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise CliError(f"{option} must be integers separated by commas, not {text!r}") from None


@click.command("train", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--model", type=click.Choice(MODEL_NAMES), default=MODEL_NAMES[0], help="architecture"
)
@click.option("--hidden", default="128", metavar="N[,N...]", help="hidden layer sizes of the mlp")
@click.option(
    "--channels",
    type=int,
    nargs=2,
    default=(8, 16),
    metavar="C1 C2",
    help="output channels of the cnn's two convolutions",
)
@click.option("--epochs", type=int, default=10)
@click.option("--seed", type=int, default=0)
@click.option("--lr", type=float, default=None, show_default="1e-3 for the mlp, 3e-3 for the cnn")
@click.option("--batch-size", type=int, default=64)
@data_dir_option()
@click.option(
    "--out",
    metavar="FILE",
    default=None,
    show_default="build/models/<model>.pt",
    help="checkpoint to write (the shipped models/<model>.pt is replaced only when named here)",
)
def command(
    model: str,
    hidden: str,
    channels: tuple[int, int],
    epochs: int,
    seed: int,
    lr: float | None,
    batch_size: int,
    data_dir: str | None,
    out: str | None,
) -> int:
    """Train the MNIST MLP or CNN in PyTorch (seeded, deterministic) and save the
    checkpoint."""
    out = out or os.path.join("build", "models", f"{model}.pt")
    lr = DEFAULT_LR[model] if lr is None else lr
    sizes = _sizes(hidden, "--hidden")
    try:
        check_positive(epochs=epochs, batch_size=batch_size)
        if any(h < 1 for h in sizes):
            raise ValueError(f"--hidden sizes must be positive, not {list(sizes)}")
        if any(c < 1 for c in channels):
            raise ValueError(f"--channels must be positive, not {list(channels)}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"--lr must be a positive finite number, not {lr}")
        check_output_path(out, "--out")
        torch_threads()
        from ..nn.checkpoint import save_checkpoint
        from ..nn.data import load_mnist
        from ..nn.train import train

        data = load_mnist(data_dir)
        net, meta = train(
            data, sizes, epochs, seed, lr, batch_size, model=model, channels=tuple(channels)
        )
        save_checkpoint(net, meta, out)
    except (OSError, ValueError) as exc:  # DataError and CheckpointError are ValueErrors
        raise CliError(str(exc)) from None
    what = net.describe() if model == "cnn" else "-".join(map(str, meta["sizes"]))
    print(f"trained {what} on {data.describe()}")
    print(
        f"epochs {meta['epochs']}, {meta['train_seconds']:.1f} s, "
        f"train accuracy {meta['train_accuracy']:.4f}, test accuracy "
        f"{meta['test_accuracy']:.4f} -> {out}"
    )
    if os.path.abspath(out) != os.path.abspath(DEFAULT_CHECKPOINTS[model]):
        print(f"use it with --model {out} (models/{model}.pt is unchanged)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``systolic train`` with ``argv``; returns the exit status."""
    return run(command, argv, prog_name="systolic train")
