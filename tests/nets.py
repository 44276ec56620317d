"""Small networks for the front-end and quantization tests, and a quick way to train them."""

import numpy as np
import torch
from torch import nn

__all__ = ["fit"]


def fit(model, data, steps=150, seed=0):
    """A short seeded training run, so that the logits are far enough apart to compare
    (one thread: much faster for so small a network on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_steps(model, data, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_steps(model, data, steps, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.from_numpy(data.train_images.astype(np.float32) / 255)
    y = torch.from_numpy(data.train_labels)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()
