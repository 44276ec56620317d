"""Train the MNIST MLP or CNN in PyTorch (``python -m systolic.host train``, ``make train``).

Seeded and deterministic; the input is ``pixel / 255`` so that the int8 input
quantization (scale 1/255) is exact.
"""

import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import MODEL_NAMES, Cnn, Mlp, to_input

__all__ = ["train", "train_epoch", "new_model", "accuracy"]


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            pred = model(to_input(images[i : i + batch])).argmax(1).numpy()
            correct += int((pred == labels[i : i + batch]).sum())
    return correct / len(images)


def train(
    data,
    hidden: tuple = (128,),
    epochs: int = 10,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 64,
    progress: bool = True,
    model: str = "mlp",
    channels: tuple = (8, 16),
) -> tuple[nn.Module, dict]:
    """Train a network on ``data``; returns ``(model, metadata)``.

    Parameters
    ----------
    model : str
        ``"mlp"`` (an :class:`Mlp` with the ``hidden`` widths) or ``"cnn"`` (a
        :class:`Cnn` with the two convolutions' ``channels``).
    """
    if model not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}, not {model!r}")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(data, hidden, epochs, seed, lr, batch_size, progress, model, channels)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def new_model(model: str = "mlp", hidden: tuple = (128,), channels: tuple = (8, 16)) -> nn.Module:
    """An untrained :class:`Mlp` (784, ``hidden``, 10) or :class:`Cnn` (``channels``),
    initialized from torch's global generator (seed it first)."""
    if model not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}, not {model!r}")
    return Cnn(channels) if model == "cnn" else Mlp((784, *hidden, 10))


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
) -> torch.Tensor:
    """One pass over the images ``order`` lists, ``batch_size`` at a time; the last loss.

    With ``world`` > 1 (data-parallel training, ``model`` wrapped in
    ``DistributedDataParallel``) each batch is split into ``world`` parts and this
    process, ``rank``, takes its own; the averaged gradients make each step the same as
    one process's on the whole batch (up to rounding) when the parts are equal.
    """
    loss = torch.zeros(())
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        if world > 1:
            idx = idx.tensor_split(world)[rank]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return loss


def _train(data, hidden, epochs, seed, lr, batch_size, progress, name, channels):
    torch.manual_seed(seed)
    model = new_model(name, hidden, channels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = to_input(data.train_images), torch.from_numpy(data.train_labels)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="train", unit="epoch", disable=not progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(x), generator=gen)
        loss = train_epoch(model, opt, x, y, order, batch_size)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - start
    arch = (
        {"model": "cnn", "channels": list(model.channels)}
        if name == "cnn"
        else {"sizes": list(model.sizes)}
    )
    meta = {
        **arch,
        "seed": seed,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "data": data.source,
        "train_images": len(x),
        "test_images": len(data.test_images),
        "test_accuracy": accuracy(model, data.test_images, data.test_labels),
        "train_accuracy": accuracy(model, data.train_images, data.train_labels),
        "train_seconds": seconds,
        "torch_version": str(torch.__version__),
    }
    return model, meta
