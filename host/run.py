"""Running a compiled network: images in shards through a backend, the clock to quote,
and the evaluation against the golden model and PyTorch."""

import json
import math
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from systolic.hw.config import CoreConfig

from . import golden, metrics
from .backends import get_backend
from .compile import compile_model
from .nn.checkpoint import to_input
from .nn.qmodel import QuantizedModel

__all__ = [
    "evaluate",
    "run_images",
    "clock_for",
    "check_clock_mhz",
    "DEFAULT_CLOCK_MHZ",
    "SYNTH_REPORT",
]

#: The clock quoted when no synthesis report gives this array's Fmax.
DEFAULT_CLOCK_MHZ = 100.0
#: Where ``make synth`` writes its results.
SYNTH_REPORT = os.path.join("build", "synth", "report.json")


def check_clock_mhz(mhz, option: str = "--clock-mhz") -> float:
    """``mhz`` as a float if it is a positive finite number, else a ValueError."""
    try:
        value = float(mhz)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be a number of MHz, not {mhz!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{option} must be a positive finite number of MHz, not {mhz}")
    return value


def clock_for(
    cfg: CoreConfig,
    override: float | None = None,
    report: str = SYNTH_REPORT,
    figures: str | None = None,
) -> tuple[float, str]:
    """(MHz, where it came from): the option, else the synthesized ECP5 Fmax of this array
    size and pipeline from this checkout's ``make synth`` (the entry of this exact
    configuration if there is one; not one of other hardware), else from the committed
    table
    (:mod:`systolic.hw.synth.figures`; ``figures`` names another, for tests), saying if the
    hardware has changed since, else 100.

    Raises
    ------
    ValueError
        ``override`` is given but not a positive finite number.
    """
    if override is not None:
        return check_clock_mhz(override), "--clock-mhz"
    from systolic.hw.synth.figures import current, lookup

    try:
        with open(report) as f:
            entries = json.load(f)
        pipeline = "deep" if cfg.deep_pipeline else "shallow"
        same = [  # a local entry of older hardware gives way to the committed table
            e
            for e in entries
            if e.get("family") == "ecp5"
            and e.get("fmax_mhz")
            and (e.get("rows"), e.get("cols"), e.get("pipeline", "deep"))
            == (cfg.rows, cfg.cols, pipeline)
            and current(e)
        ]
        same.sort(key=lambda e: e.get("config") != cfg.tag)
        if same:
            e = same[0]
            kib = "/".join(
                str(e.get(k)) for k in ("act_kib", "hidden_kib", "weight_kib", "acc_kib")
            )
            return float(e["fmax_mhz"]), (
                f"synthesized Fmax ({e.get('device')}, {e['rows']}x{e['cols']}, buffers {kib} KiB)"
            )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    found = lookup(cfg, path=figures)
    if found is not None:
        e, current = found
        since = "" if current else "; the hardware source has changed since"
        return float(e["fmax_mhz"]), (
            f"synthesized Fmax ({e.get('device')}, {e['rows']}x{e['cols']}, committed table, "
            f"source {str(e.get('hw_hash', '?'))[:16]}{since})"
        )
    return DEFAULT_CLOCK_MHZ, "assumed (no synthesis report for this size)"


def run_images(
    backend,
    program,
    x: np.ndarray,
    shard: int | None = None,
    workers: int = 1,
    progress: bool = True,
    scheduler: str | None = None,
) -> dict:
    """Run ``x`` in shards of whole batches; returns outputs, summed status, timing.

    Each shard is a complete program (preamble, batches, END) in its own backend run,
    so shards can run in parallel: ``workers`` local processes, or the workers of the
    Dask cluster whose scheduler is at ``scheduler`` (``tcp://HOST:PORT``; they must be
    able to import this package and, for rtl and gate, see the simulator's build
    folder), see ``systolic.host.parallel``.
    """
    B = program.batch
    for name, value in (("shard", shard), ("workers", workers)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    shard = len(x) if shard is None else max(B, (shard // B) * B)
    pieces = [x[i : i + shard] for i in range(0, len(x), shard)]
    start = time.perf_counter()
    if scheduler is not None:
        from .parallel import connect, run_shards_dask

        with connect(scheduler) as client:
            results = run_shards_dask(backend, program, pieces, client)
    elif workers > 1 and len(pieces) > 1:
        from .parallel import run_shards

        results = run_shards(backend, program, pieces, workers, progress)
    else:
        if len(pieces) == 1 and hasattr(backend, "progress"):
            backend.progress = progress  # one shard: the simulator's own progress bar
        results = [
            backend.run(program, p)
            for p in tqdm(
                pieces,
                desc=f"{backend.name}",
                unit="shard",
                disable=not progress or len(pieces) == 1,
            )
        ]
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
        "wall_seconds": wall,
        "shards": len(pieces),
    }


def evaluate(
    cfg: CoreConfig,
    backend_name: str,
    images: np.ndarray,
    labels: np.ndarray,
    qmodel: QuantizedModel,
    reference,
    float_model=None,
    batch: int = 64,
    clock_mhz: float | None = None,
    shard: int | None = None,
    workers: int = 1,
    progress: bool = True,
    scheduler: str | None = None,
    backend_options: dict | None = None,
) -> tuple[dict, np.ndarray | None]:
    """Run one backend on MNIST ``images`` and compare it with the golden model and the
    reference (PyTorch's converted graph, or ONNX Runtime), and the float model if any.

    Returns the report dictionary (accuracies, mismatches against the golden model, the
    counters and :func:`systolic.host.metrics.run_figures`) and the int8 logits (None after a
    core error). ``shard``, ``workers`` and ``scheduler`` are :func:`run_images`'s;
    ``backend_options`` go to :func:`systolic.host.backends.get_backend` (the board's ``port``).
    """
    x = qmodel.quantize_input(images)
    program = compile_model(qmodel, cfg, batch)
    backend = get_backend(backend_name, cfg, **(backend_options or {}))
    backend.prepare()
    run = run_images(backend, program, x, shard, workers, progress, scheduler)
    gold = golden.run(qmodel, x)
    ref_q = reference.int8(to_input(images))
    if float_model is not None:
        with torch.no_grad():
            float_pred = float_model(to_input(images)).argmax(1).numpy()
    out = run["outputs"]
    mhz, clock_source = clock_for(cfg, clock_mhz)
    useful = program.useful_macs(len(x))
    cycles = run["cycles"]
    report = {
        "backend": backend_name,
        "rows": cfg.rows,
        "cols": cfg.cols,
        "config": cfg.tag,
        "images": int(len(x)),
        "batch": batch,
        "shards": run["shards"],
        "workers": workers,
        "accuracy": float(np.mean(out.argmax(1) == labels)) if out is not None else None,
        "golden_accuracy": float(np.mean(gold.argmax(1) == labels)),
        "float_accuracy": float(np.mean(float_pred == labels)) if float_model is not None else None,
        f"{reference.name}_int8_accuracy": float(np.mean(ref_q.argmax(1) == labels)),
        "argmax_agreement": float(np.mean(out.argmax(1) == ref_q.argmax(1)))
        if out is not None
        else None,
        "mismatches": int(np.count_nonzero(out != gold)) if out is not None else int(gold.size),
        "error": run["status"]["error"],
        "predicted_cycles": run["predicted_cycles"],
        "cycles_match": cycles == run["predicted_cycles"],
        **metrics.run_figures(cfg, useful, run["status"], len(x), mhz),
        "clock_source": clock_source,
        "wall_seconds": run["wall_seconds"],
        "sim_cycles_per_second": metrics.sim_speed(run["sim_cycles"], run["sim_seconds"]),
    }
    return report, out
