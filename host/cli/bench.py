"""``python -m host bench`` and ``python -m host bench-core``: the benchmarks."""

import argparse
import json
import os
import re
import sys

from hw.config import CoreConfig

from .. import bench as bench_module
from ..backends import BackendError
from ..bench import SIZES, bench, bench_core, report_md
from ..files import atomic_write, check_output_path
from ..nn.checkpoint import DEFAULT_CHECKPOINTS, MODEL_NAMES
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
        action="append",
        help=f"{' or '.join(MODEL_NAMES)} (the checked-in networks), or a float checkpoint "
        "(.pt), quantized model (.qnpz) or quantized ONNX file (.onnx); repeat for several "
        f"(default: {', '.join(MODEL_NAMES)}, each in a folder of --out)",
    )
    args = p.parse_args(argv)
    names = args.model or list(MODEL_NAMES)
    models = [DEFAULT_CHECKPOINTS.get(m, m) for m in names]
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be positive, not {args.workers}")
        if args.clock_mhz is not None:
            check_clock_mhz(args.clock_mhz)
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out}: is not a directory")
        check_output_path(os.path.join(args.out, "bench.json"), "--out")
        for name, path in zip(names, models, strict=True):
            if not os.path.isfile(path):
                raise ValueError(f"--model {name}: no such file")
        dirs = [os.path.splitext(os.path.basename(m))[0] for m in models]
        if len(set(dirs)) != len(dirs):
            raise ValueError(f"--model: two models would share the folder {dirs}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = []
    try:
        for path, sub in zip(models, dirs, strict=True):
            out = os.path.join(args.out, sub) if len(models) > 1 else args.out
            print(f"== {path}", flush=True)
            results.append(bench(args.size, args.workers, out, args.clock_mhz, model=path))
    except (OSError, ValueError) as exc:  # CheckpointError, QuantError, OnnxError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(results) > 1:  # one report for all, beside the folders; headings one level down
        parts = [
            re.sub(r"^(#+) ", r"#\1 ", report_md(r, prefix=f"{sub}/"), flags=re.M).replace(
                "## Benchmark report", f"## {r['network']}", 1
            )
            for r, sub in zip(results, dirs, strict=True)
        ]
        with atomic_write(os.path.join(args.out, "REPORT.md"), "w") as f:
            f.write("\n\n".join(["# Benchmark report", *parts]))
    for r in results:
        print(report_md(r))
    bad = [e for r in results for e in r["sweep"] if e["mismatches"]] + [
        s for r in results for s in r["rtl"] if not (s["outputs_equal"] and s["cycles_equal"])
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
    if not res["ceiling_equal"] or res["ceiling_cycles"] != res["sim_cycles"]:
        print("error: Verilator's ceiling disagrees with the rtl backend", file=sys.stderr)
        return 1
    return 0
