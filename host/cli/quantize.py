"""``systolic quantize``: int8-quantize a float checkpoint, report against PyTorch."""

import os

import click

from systolic.hw.cli import CONTEXT_SETTINGS, CliError, run

from ..files import atomic_write, check_output_path
from ..nn.bundled import DEFAULT_CHECKPOINTS, DEFAULT_QUANTIZED_MODELS, MODEL_NAMES, PACKAGED
from .options import data_dir_option, json_option, model_option, torch_threads

__all__ = ["command", "main"]


def _default_out(name: str) -> str:
    """The shipped model's quantized file in a checkout; an installed package's models
    are read only, so there build/models/<name>.qnpz."""
    if PACKAGED:
        return os.path.join("build", "models", f"{name}.qnpz")
    return DEFAULT_QUANTIZED_MODELS[name]


@click.command("quantize", context_settings=CONTEXT_SETTINGS)
@model_option(
    help=f"float checkpoint (.pt), or a shipped network: {' or '.join(MODEL_NAMES)}",
)
@data_dir_option()
@click.option(
    "--out",
    metavar="FILE",
    default=None,
    show_default="models/<name>.qnpz for a shipped network, else models/mlp.qnpz; "
    "build/models/ when installed",
    help="quantized model to write",
)
@json_option()
def command(model: str, data_dir: str | None, out: str | None, json_path: str | None) -> int:
    """Quantize a float checkpoint to int8 (post-training, deterministic calibration) and
    report its accuracy against PyTorch's float and int8 models."""
    import dataclasses
    import json

    name = model if model in MODEL_NAMES else None
    if name is None:  # a path: a shipped checkpoint keeps its quantized file
        full = os.path.abspath(model)
        name = next(
            (n for n, c in DEFAULT_CHECKPOINTS.items() if os.path.abspath(c) == full),
            MODEL_NAMES[0],
        )
    else:
        model = DEFAULT_CHECKPOINTS[name]
    out = out or _default_out(name)
    try:
        check_output_path(out, "--out")
        if json_path:
            check_output_path(json_path, "--json")
        if os.path.abspath(out) == os.path.abspath(model):
            raise ValueError(f"--out {out} would overwrite the checkpoint it quantizes")
        torch_threads()
        from ..nn.data import load_mnist
        from ..nn.quantize import quantize_checkpoint, report

        data = load_mnist(data_dir)
        qmodel, tq_model, float_model = quantize_checkpoint(model, data, relative_to=out)
        res = report(qmodel, tq_model, float_model, data.test_images, data.test_labels)
        qmodel = dataclasses.replace(qmodel, meta={**qmodel.meta, "report": res})
        qmodel.save(out)
        if json_path:
            with atomic_write(json_path, "w") as f:
                json.dump(res, f, indent=2)
    except (OSError, ValueError) as exc:  # DataError, CheckpointError, QuantError
        raise CliError(str(exc)) from None
    print(f"quantized {model} -> {out} ({data.describe()})")
    for key, value in res.items():
        print(f"{key:22s} {value:.4f}" if isinstance(value, float) else f"{key:22s} {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``systolic quantize`` with ``argv``; returns the exit status."""
    return run(command, argv, prog_name="systolic quantize")
