"""MNIST inference on the core: ``python -m host infer`` (``make infer``).

Takes a float checkpoint (``.pt``, quantized here; calibration is deterministic) or a
quantized model written by ``python -m host quantize`` (``.qnpz``, recognized by its
content; its float checkpoint, named and hashed inside it, is loaded for the PyTorch
comparison and must quantize to exactly the same layers), compiles the network for the
chosen array, streams the test images through a backend, and checks every output
byte against the integer golden model and every prediction against PyTorch (float and
its own int8 model). Exits non-zero after the report if any output differs from the
golden model or the core reports an error.
"""

import argparse
import json
import logging
import os
import sys

import torch

from hw.config import CoreConfig

from ..backends import BACKENDS, BackendError, default_config
from ..compile import CompileError, ProgramError, max_batch
from ..files import atomic_write, check_output_path
from ..nn.checkpoint import DEFAULT_CHECKPOINTS, MODEL_NAMES, CheckpointError
from ..nn.data import DataError, load_mnist
from ..nn.quantize import load_for_inference
from ..run import check_clock_mhz, evaluate

__all__ = ["main"]


def _print(report):
    print(
        f"-- {report['backend']} backend, {report['rows']}x{report['cols']} array, "
        f"{report['images']} images, batch {report['batch']}"
    )
    for k, v in report.items():
        if k in ("backend",):
            continue
        print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")


def _write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host infer", description=__doc__)
    p.add_argument("--backend", choices=BACKENDS, default="rtl")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--config", help="CoreConfig JSON file (overrides --rows/--cols)")
    p.add_argument(
        "--limit", type=int, default=None, help="test images (default: all; 256 for rtl/gate)"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per batch (default: 64, or the most the buffers hold)",
    )
    p.add_argument("--data-dir", default=None, help="MNIST IDX files (default: embedded)")
    p.add_argument(
        "--model",
        default=MODEL_NAMES[0],
        help=f"{' or '.join(MODEL_NAMES)} (the checked-in networks), or a float checkpoint "
        "(.pt), quantized model (.qnpz) or quantized ONNX file (.onnx)",
    )
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--clock-mhz", type=float, default=None)
    p.add_argument("--shard", type=int, default=None, help="images per backend run")
    p.add_argument("--workers", type=int, default=1, help="parallel backend runs")
    p.add_argument(
        "--demo", action="store_true", help="rtl on 256 images and model on the whole test split"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        for name in ("limit", "batch", "shard", "workers"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be positive, not {value}")
        if args.clock_mhz is not None:
            check_clock_mhz(args.clock_mhz)
        if args.json:
            check_output_path(args.json, "--json")
        if args.config:
            with open(args.config) as f:
                cfg = CoreConfig.from_json(f.read())
        else:
            cfg = default_config(args.backend, args.rows, args.cols)
        data = load_mnist(args.data_dir)
        args.model = DEFAULT_CHECKPOINTS.get(args.model, args.model)
        qmodel, tq_model, float_model = load_for_inference(args.model, data)
        if args.batch is None:
            args.batch = min(64, max_batch(qmodel, cfg))
        if args.batch > max_batch(qmodel, cfg):
            raise CompileError(
                f"batch {args.batch} does not fit the {cfg.rows}x{cfg.cols} "
                f"buffers; use --batch {max_batch(qmodel, cfg)} or less"
            )
        runs = (
            [("rtl", 256), ("model", None)]
            if args.demo
            else [(args.backend, args.limit or (256 if args.backend != "model" else None))]
        )
        reports = []
        for backend, limit in runs:
            n = len(data.test_images) if limit is None else min(limit, len(data.test_images))
            report, _ = evaluate(
                cfg,
                backend,
                data.test_images[:n],
                data.test_labels[:n],
                qmodel,
                tq_model,
                float_model,
                args.batch,
                args.clock_mhz,
                args.shard,
                args.workers,
            )
            report["data"] = data.source
            report["model"] = args.model
            reports.append(report)
            _print(report)
        if args.json:
            _write_json(args.json, reports[0] if len(reports) == 1 else {"runs": reports})
    except (
        OSError,
        ValueError,
        TypeError,
        DataError,
        CheckpointError,
        CompileError,
        ProgramError,
        BackendError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = [r for r in reports if r["mismatches"] or r["error"]]
    for r in bad:
        print(
            f"error: {r['backend']}: {r['mismatches']} output bytes differ from the golden "
            f"model, core error code {r['error']}",
            file=sys.stderr,
        )
    return 1 if bad else 0
