"""MNIST inference on the core: ``python -m host.infer`` (``make infer``).

Takes a float checkpoint (``.pt``, quantized here; calibration is deterministic) or a
quantized model written by ``python -m host.quantize`` (``.qnpz``, recognized by its
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
import math
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from hw.config import CoreConfig

from . import golden
from .backends import BACKENDS, BackendError, get_backend
from .compiler import CompileError, compile, max_batch
from .data import DataError, load_mnist
from .files import atomic_write
from .program import ProgramError
from .quantize import load_for_inference, torch_int8_logits
from .train import DEFAULT_CHECKPOINT, CheckpointError, check_output_path, to_input

__all__ = ["infer", "run_images", "clock_for", "check_clock_mhz", "main", "DEFAULT_CLOCK_MHZ"]

log = logging.getLogger(__name__)
DEFAULT_CLOCK_MHZ = 100.0
SYNTH_REPORT = os.path.join("build", "synth", "report.json")


def check_clock_mhz(mhz, option="--clock-mhz"):
    """``mhz`` as a float if it is a positive finite number, else a ValueError."""
    try:
        value = float(mhz)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be a number of MHz, not {mhz!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{option} must be a positive finite number of MHz, not {mhz}")
    return value


def clock_for(cfg, override=None, report=SYNTH_REPORT):
    """(MHz, where it came from): the option, else the synthesized ECP5 Fmax of this array
    size and pipeline (the entry of this exact configuration if there is one), else 100.

    Raises
    ------
    ValueError
        ``override`` is given but not a positive finite number.
    """
    if override is not None:
        return check_clock_mhz(override), "--clock-mhz"
    try:
        with open(report) as f:
            entries = json.load(f)
        pipeline = "deep" if cfg.deep_pipeline else "shallow"
        same = [e for e in entries if e.get("family") == "ecp5" and e.get("fmax_mhz")
                and (e.get("rows"), e.get("cols"), e.get("pipeline", "deep")) ==
                (cfg.rows, cfg.cols, pipeline)]
        same.sort(key=lambda e: e.get("config") != cfg.tag)
        if same:
            e = same[0]
            kib = "/".join(str(e.get(k)) for k in ("act_kib", "hidden_kib", "weight_kib",
                                                   "acc_kib"))
            return float(e["fmax_mhz"]), (f"synthesized Fmax ({e.get('device')}, "
                                          f"{e['rows']}x{e['cols']}, buffers {kib} KiB)")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return DEFAULT_CLOCK_MHZ, "assumed (no synthesis report for this size)"


def run_images(backend, program, x, shard=None, workers=1, progress=True):
    """Run ``x`` in shards of whole batches; returns outputs, summed status, timing.

    Each shard is a complete program (preamble, batches, END) in its own backend run,
    so shards can run in parallel (``workers`` processes, see ``host.parallel``).
    """
    B = program.batch
    for name, value in (("shard", shard), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    shard = len(x) if shard is None else max(B, (shard // B) * B)
    pieces = [x[i:i + shard] for i in range(0, len(x), shard)]
    start = time.perf_counter()
    if workers > 1 and len(pieces) > 1:
        from .parallel import run_shards
        results = run_shards(backend, program, pieces, workers, progress)
    else:
        results = [backend.run(program, p) for p in
                   tqdm(pieces, desc=f"{backend.name}", unit="shard", disable=not progress
                        or len(pieces) == 1)]
    wall = time.perf_counter() - start
    outputs = [r.outputs for r in results]
    status = {k: sum(r.status[k] for r in results) for k in results[0].status}
    status["error"] = max(r.status["error"] for r in results)
    return {
        "outputs": None if any(o is None for o in outputs) else np.concatenate(outputs),
        "status": status,
        "cycles": sum(r.cycles for r in results),
        "predicted_cycles": sum(r.predicted_cycles for r in results),
        "sim_cycles": sum(r.sim_cycles for r in results),
        "sim_seconds": sum(r.sim_seconds for r in results),
        "wall_seconds": wall, "shards": len(pieces),
    }


def infer(cfg, backend_name, images, labels, qmodel, tq_model, float_model, batch=64,
          clock_mhz=None, shard=None, workers=1, progress=True):
    """Run one backend on ``images`` and build the report dictionary."""
    x = qmodel.quantize_input(images)
    program = compile(qmodel, cfg, batch)
    backend = get_backend(backend_name, cfg)
    backend.prepare()
    run = run_images(backend, program, x, shard, workers, progress)
    gold = golden.run(qmodel, x)
    torch_q = torch_int8_logits(tq_model, images)
    with torch.no_grad():
        float_pred = float_model(to_input(images)).argmax(1).numpy()
    out = run["outputs"]
    mhz, clock_source = clock_for(cfg, clock_mhz)
    useful = program.useful_macs(len(x))
    cycles = run["cycles"]
    report = {
        "backend": backend_name, "rows": cfg.rows, "cols": cfg.cols, "config": cfg.tag,
        "images": int(len(x)), "batch": batch, "shards": run["shards"], "workers": workers,
        "accuracy": float(np.mean(out.argmax(1) == labels)) if out is not None else None,
        "golden_accuracy": float(np.mean(gold.argmax(1) == labels)),
        "float_accuracy": float(np.mean(float_pred == labels)),
        "torch_int8_accuracy": float(np.mean(torch_q.argmax(1) == labels)),
        "argmax_agreement": float(np.mean(out.argmax(1) == torch_q.argmax(1)))
        if out is not None else None,
        "mismatches": int(np.count_nonzero(out != gold)) if out is not None else int(gold.size),
        "error": run["status"]["error"],
        "cycles": cycles, "predicted_cycles": run["predicted_cycles"],
        "cycles_match": cycles == run["predicted_cycles"],
        "busy_cycles": run["status"]["busy_cycles"], "mac_cycles": run["status"]["mac_cycles"],
        "useful_macs": useful,
        "utilization": useful / (cfg.rows * cfg.cols * cycles),
        "cycles_per_image": cycles / len(x),
        "clock_mhz": mhz, "clock_source": clock_source,
        "images_per_second_at_clock": len(x) * mhz * 1e6 / cycles,
        "wall_seconds": run["wall_seconds"],
        "sim_cycles_per_second": run["sim_cycles"] / run["sim_seconds"]
        if run["sim_seconds"] else None,
    }
    return report, out


def _print(report):
    print(f"-- {report['backend']} backend, {report['rows']}x{report['cols']} array, "
          f"{report['images']} images, batch {report['batch']}")
    for k, v in report.items():
        if k in ("backend",):
            continue
        print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")


def _write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host.infer", description=__doc__)
    p.add_argument("--backend", choices=BACKENDS, default="rtl")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--config", help="CoreConfig JSON file (overrides --rows/--cols)")
    p.add_argument("--limit", type=int, default=None, help="test images (default: all; "
                   "256 for rtl/gate)")
    p.add_argument("--batch", type=int, default=None,
                   help="images per batch (default: 64, or the most the buffers hold)")
    p.add_argument("--data-dir", default=None, help="MNIST IDX files (default: embedded)")
    p.add_argument("--model", default=DEFAULT_CHECKPOINT,
                   help="float checkpoint (.pt) or quantized model (.qnpz)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--clock-mhz", type=float, default=None)
    p.add_argument("--shard", type=int, default=None, help="images per backend run")
    p.add_argument("--workers", type=int, default=1, help="parallel backend runs")
    p.add_argument("--demo", action="store_true",
                   help="rtl on 256 images and model on the whole test split")
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
        elif args.backend == "gate":
            from sim.gate import gate_config   # small buffers for the netlist
            cfg = gate_config(args.rows, args.cols)
        else:
            cfg = CoreConfig(rows=args.rows, cols=args.cols)
        data = load_mnist(args.data_dir)
        qmodel, tq_model, float_model = load_for_inference(args.model, data)
        if args.batch is None:
            args.batch = min(64, max_batch(qmodel, cfg))
        if args.batch > max_batch(qmodel, cfg):
            raise CompileError(f"batch {args.batch} does not fit the {cfg.rows}x{cfg.cols} "
                               f"buffers; use --batch {max_batch(qmodel, cfg)} or less")
        runs = [("rtl", 256), ("model", None)] if args.demo else \
            [(args.backend, args.limit or (256 if args.backend != "model" else None))]
        reports = []
        for backend, limit in runs:
            n = len(data.test_images) if limit is None else min(limit, len(data.test_images))
            report, _ = infer(cfg, backend, data.test_images[:n], data.test_labels[:n], qmodel,
                              tq_model, float_model, args.batch, args.clock_mhz, args.shard,
                              args.workers)
            report["data"] = data.source
            report["model"] = args.model
            reports.append(report)
            _print(report)
        if args.json:
            _write_json(args.json, reports[0] if len(reports) == 1 else {"runs": reports})
    except (OSError, ValueError, TypeError, DataError, CheckpointError, CompileError,
            ProgramError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = [r for r in reports if r["mismatches"] or r["error"]]
    for r in bad:
        print(f"error: {r['backend']}: {r['mismatches']} output bytes differ from the golden "
              f"model, core error code {r['error']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
