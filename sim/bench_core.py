"""``make bench-core``: one large matmul through the simulated core.

Streams ``M x K`` by ``K x N`` (default 64x784 by 784x128, the MNIST first layer at
batch 64) through the RTL in Verilator, checks every output against numpy, and writes
``build/bench/core.json`` with cycles, utilization and simulation speed.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from hw.config import CoreConfig
from sim import runner
from sim.programs import matmul_program, parse_output, reference_matmul

__all__ = ["bench_core", "main"]


def bench_core(cfg, M=64, K=784, N=128, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    w = rng.integers(-128, 128, (K, N), dtype=np.int8)
    bias = rng.integers(-1000, 1000, N)
    requant = (np.full(N, 1 << 30), np.full(N, 40), np.zeros(N), np.zeros(N))
    beats = matmul_program(cfg, a, w, bias, requant)
    t0 = time.perf_counter()
    simulator = runner.build(cfg)
    build_s = time.perf_counter() - t0
    out, report = simulator.stream([beats])[0]
    got, status = parse_output(cfg, out, M, N, raw=False)
    want = reference_matmul(a, w, bias, requant)
    mismatches = -1 if got is None else int(np.count_nonzero(got != want))
    useful = M * K * N
    R, C = cfg.rows, cfg.cols
    return {
        "rows": R, "cols": C, "M": M, "K": K, "N": N, "config": cfg.tag,
        "error": status["error"], "mismatches": mismatches,
        "cycles": status["cycles"], "busy_cycles": status["busy_cycles"],
        "mac_cycles": status["mac_cycles"], "useful_macs": useful,
        "utilization": useful / (R * C * status["busy_cycles"]),
        "overall_utilization": useful / (R * C * status["cycles"]),
        "program_beats": int(len(beats)),
        "sim_cycles": report["sim_cycles"],
        "sim_cycles_per_second": report["sim_cycles"] / report["sim_seconds"],
        "sim_cycles_per_second_wall": report["sim_cycles"] / report["wall_seconds"],
        "build_seconds": build_s, "wall_seconds": report["wall_seconds"],
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.bench_core", description=__doc__)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--shape", default="64x784x128", help="MxKxN")
    p.add_argument("--json", default="build/bench/core.json")
    args = p.parse_args(argv)
    try:
        cfg = CoreConfig(rows=args.rows, cols=args.cols)
        M, K, N = (int(x) for x in args.shape.lower().split("x"))
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = bench_core(cfg, M, K, N)
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2)
    os.replace(tmp, args.json)
    for k, v in res.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    if res["mismatches"] != 0 or res["error"] != 0:
        print("error: outputs differ from the numpy reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
