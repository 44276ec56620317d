"""Options that several ``systolic`` commands share, with one name and one help text."""

import os

import click

from ..nn.bundled import MODEL_NAMES

__all__ = [
    "MODEL_HELP",
    "check_positive",
    "data_dir_option",
    "json_option",
    "model_option",
    "torch_threads",
]

#: What ``--model`` takes wherever a network is read.
MODEL_HELP = (
    f"{' or '.join(MODEL_NAMES)} (the shipped networks), or a float checkpoint (.pt), "
    "quantized model (.qnpz) or quantized ONNX file (.onnx)"
)


def model_option(**kwargs):
    """``--model``: a shipped network's name or a model file."""
    kwargs.setdefault("default", MODEL_NAMES[0])
    kwargs.setdefault("help", MODEL_HELP)
    return click.option("--model", metavar="NAME|FILE", **kwargs)


def data_dir_option():
    """``--data-dir``: the MNIST IDX files, else the embedded subset."""
    return click.option(
        "--data-dir",
        metavar="DIR",
        default=None,
        show_default="the embedded 5,000-image subset",
        help="folder of the MNIST IDX files (train-images-idx3-ubyte[.gz] ...)",
    )


def json_option(default: str | None = None, help: str = "write the report here as JSON"):
    """``--json``: where the command's report goes."""
    return click.option("--json", "json_path", metavar="FILE", default=default, help=help)


def check_positive(**values: int | None) -> None:
    """ValueError ``--<name> must be positive, not <value>`` for the first value below 1."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, not {value}")


def torch_threads() -> None:
    """At most two torch threads (the machines this runs on are small and shared)."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
