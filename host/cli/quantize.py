"""``python -m host quantize``: int8-quantize a float checkpoint, report against PyTorch."""

import argparse
import dataclasses
import json
import os
import sys

import torch

from ..files import atomic_write, check_output_path
from ..nn.checkpoint import DEFAULT_CHECKPOINTS, MODEL_NAMES
from ..nn.data import load_mnist
from ..nn.qmodel import DEFAULT_QUANTIZED_MODELS, QuantError
from ..nn.quantize import quantize_checkpoint, report

__all__ = ["main"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host quantize", description=__doc__)
    p.add_argument(
        "--model",
        default=MODEL_NAMES[0],
        help=f"float checkpoint, or an architecture's checked-in one: "
        f"{', '.join(MODEL_NAMES)} (default {MODEL_NAMES[0]})",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--out",
        default=None,
        help="quantized model to write (default: models/<name>.qnpz for a named model "
        "or a checked-in checkpoint, else models/mlp.qnpz)",
    )
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    name = args.model if args.model in MODEL_NAMES else None
    if name is None:  # a path: a checked-in checkpoint keeps its quantized file
        full = os.path.abspath(args.model)
        name = next(
            (n for n, c in DEFAULT_CHECKPOINTS.items() if os.path.abspath(c) == full),
            MODEL_NAMES[0],
        )
    else:
        args.model = DEFAULT_CHECKPOINTS[name]
    args.out = args.out or DEFAULT_QUANTIZED_MODELS[name]
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        check_output_path(args.out, "--out")
        if args.json:
            check_output_path(args.json, "--json")
        if os.path.abspath(args.out) == os.path.abspath(args.model):
            raise QuantError(f"--out {args.out} would overwrite the checkpoint it quantizes")
        data = load_mnist(args.data_dir)
        qmodel, tq_model, float_model = quantize_checkpoint(args.model, data, relative_to=args.out)
        res = report(qmodel, tq_model, float_model, data.test_images, data.test_labels)
        qmodel = dataclasses.replace(qmodel, meta={**qmodel.meta, "report": res})
        qmodel.save(args.out)
        if args.json:
            with atomic_write(args.json, "w") as f:
                json.dump(res, f, indent=2)
    except (OSError, ValueError) as exc:  # DataError, CheckpointError, QuantError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"quantized {args.model} -> {args.out} ({data.describe()})")
    for key, value in res.items():
        print(f"{key:22s} {value:.4f}" if isinstance(value, float) else f"{key:22s} {value}")
    return 0
