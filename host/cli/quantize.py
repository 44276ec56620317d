"""``python -m host quantize``: int8-quantize a float checkpoint, report against PyTorch."""

import argparse
import json
import os
import sys

import torch

from ..files import atomic_write, check_output_path
from ..nn.checkpoint import DEFAULT_CHECKPOINT
from ..nn.data import load_mnist
from ..nn.qmodel import DEFAULT_QUANTIZED, QuantError, QuantizedModel
from ..nn.quantize import quantize_checkpoint, report

__all__ = ["main"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host quantize", description=__doc__)
    p.add_argument("--model", default=DEFAULT_CHECKPOINT, help="float checkpoint")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=DEFAULT_QUANTIZED, help="quantized model to write")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
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
        qmodel = QuantizedModel(qmodel.layers, {**qmodel.meta, "report": res})
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
