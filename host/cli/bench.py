"""``python -m host bench`` and ``python -m host bench-core``: the benchmarks."""

import argparse
import json
import os
import sys

from hw.config import CoreConfig

from .. import bench as bench_module
from ..backends import BackendError
from ..bench import SIZES, bench, bench_core, report_md
from ..files import atomic_write, check_output_path
from ..nn.checkpoint import DEFAULT_CHECKPOINT
from ..run import check_clock_mhz

__all__ = ["main", "main_core"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host bench", description=bench_module.__doc__)
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clock-mhz", type=float, default=None)
    p.add_argument("--out", default=os.path.join("build", "bench"))
    p.add_argument(
        "--model",
        default=DEFAULT_CHECKPOINT,
        help="float checkpoint (.pt), quantized model (.qnpz) or quantized ONNX file (.onnx)",
    )
    args = p.parse_args(argv)
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be positive, not {args.workers}")
        if args.clock_mhz is not None:
            check_clock_mhz(args.clock_mhz)
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out}: is not a directory")
        check_output_path(os.path.join(args.out, "bench.json"), "--out")
        if not os.path.isfile(args.model):
            raise ValueError(f"--model {args.model}: no such file")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = bench(args.size, args.workers, args.out, args.clock_mhz, model=args.model)
    except (OSError, ValueError) as exc:  # CheckpointError, QuantError, OnnxError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report_md(result))
    bad = [e for e in result["sweep"] if e["mismatches"]] + [
        s for s in result["rtl"] if not (s["outputs_equal"] and s["cycles_equal"])
    ]
    if bad:
        print(
            "error: a backend disagreed with the golden model or the cycle model", file=sys.stderr
        )
        return 1
    return 0


def main_core(argv=None):
    p = argparse.ArgumentParser(prog="python -m host bench-core", description=bench_core.__doc__)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--shape", default="64x784x128", help="MxKxN")
    p.add_argument("--json", default=os.path.join("build", "bench", "core.json"))
    args = p.parse_args(argv)
    try:
        cfg = CoreConfig(rows=args.rows, cols=args.cols)
        shape = args.shape.lower().split("x")
        if len(shape) != 3 or not all(n.isdigit() and int(n) > 0 for n in shape):
            raise ValueError(f"--shape must be MxKxN with positive integers, not {args.shape!r}")
        M, K, N = (int(n) for n in shape)
        check_output_path(args.json, "--json")
        res = bench_core(cfg, M, K, N)
    except (OSError, ValueError, TypeError, BackendError) as exc:  # CompileError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with atomic_write(args.json, "w") as f:
        json.dump(res, f, indent=2)
    for k, v in res.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    if res["mismatches"] != 0 or res["error"] != 0:
        print("error: outputs differ from the numpy reference", file=sys.stderr)
        return 1
    return 0
