"""``make bench``: the core against PyTorch on the CPU, a CUDA GPU when there is one, and
distributed runs, measured in one run.

Writes ``build/bench/bench.json``, ``build/bench/REPORT.md``, ``build/bench/report.html``
(the same report) and PNG plots:

* the comparison table (:func:`systolic.host.report_bench.comparison_table`): training time per
  epoch, batch-1 latency, throughput at batch 256 and at the best batch, peak memory,
  for PyTorch on the CPU (float, int8), on a CUDA GPU (eager, and batch 1 as a CUDA
  graph; a line says when there is none), the core per array size (modelled), DDP
  training and Dask-sharded simulation;
* array sizes 4x4, 8x8, 16x16 x batch 1, 8, 64, 256 on the model backend (exact
  cycles): cycles per image, utilization, images/s and latency at the synthesized
  Fmax (or a stated default clock), on-chip memory the program needs;
* a sample of each size on the rtl backend: outputs and cycles equal to the model's,
  and the simulation speed;
* PyTorch (:mod:`systolic.host.bench_platforms`): ``torch.utils.benchmark`` timings at each
  batch, training time, peak memory, the machine's load;
* data-parallel training: DDP over gloo, 2 processes, weights checked equal across
  the ranks and against one process;
* sharded RTL runs: 1 worker vs ``--workers`` local processes, and Dask with 1, 2, ...
  workers, with byte-identical outputs.

``--size quick`` runs a CI-sized version of the same measurements.
"""

import json
import os
import time

import numpy as np
import torch

from systolic.hw.config import CoreConfig

from . import golden, metrics
from .backends import get_backend
from .bench_platforms import THREADS, measure_cpu, measure_ddp, measure_gpu
from .compile import compile_matmul, compile_model, max_batch
from .files import atomic_write
from .nn.checkpoint import DEFAULT_CHECKPOINT, Cnn
from .nn.data import load_mnist
from .nn.quantize import load_for_inference
from .report import Heading, Image, times, to_html, to_markdown
from .report_bench import comparison_table, report_blocks, synth_entries
from .run import clock_for, run_images

__all__ = ["bench", "bench_core", "report_md", "report_html", "write_combined_report", "SIZES"]

ARRAYS = [(4, 4), (8, 8), (16, 16)]
BATCHES = [1, 8, 64, 256]
#: images in the model sweep, RTL sample images, sharded-run images and shard, torch
#: repeats (timed seconds), PyTorch batches, training epochs (one process), DDP epochs
#: and images per DDP epoch (None: the whole training set)
SIZES = {
    "quick": {
        "sweep": 64,
        "rtl": 16,
        "shards": 64,
        "shard": 32,
        "repeat": 50,
        "torch_batches": (1, 8, 64, 256),
        "epochs": 2,
        "ddp_epochs": 1,
        "ddp_images": 512,
    },
    "full": {
        "sweep": None,
        "rtl": 128,
        "shards": 512,
        "shard": 128,
        "repeat": 1000,
        "torch_batches": (1, 8, 64, 256, 1024),
        "epochs": 10,
        "ddp_epochs": 2,
        "ddp_images": None,
    },
}


def sweep_config(rows, cols):
    """Buffers as large as the address fields allow, so that batch 256 fits when it can."""
    return CoreConfig(
        rows=rows,
        cols=cols,
        act_kib=min(4096, rows * 32),
        hidden_kib=min(4096, rows * 32),
        acc_kib=min(4096, cols * 64),
    )


def measure_torch(model_path, images, repeat, epochs, architecture):
    """PyTorch on the CPU, in a child process so that its peak memory is its own: the float
    model and the converted int8 graph of ``model_path``, and training a network of the
    same ``architecture`` (:func:`systolic.host.nn.train.train` keyword arguments).

    Kept for callers of the earlier interface: :func:`systolic.host.bench_platforms.measure_cpu`
    at batches 1 and 256."""
    return measure_cpu(
        model_path, images, (1, 256), _min_run_time(repeat), {"epochs": epochs, **architecture}
    )


def _min_run_time(repeat):
    """Seconds of timed blocks per figure (torch.utils.benchmark.blocked_autorange)."""
    return max(0.2, repeat / 2000)


def network_name(qmodel) -> str:
    """``784-128-10`` for an MLP, ``CNN 1x28x28 conv8-pool-conv16-pool-10`` for a CNN."""
    if not any(q.kind == "conv" for q in qmodel.layers):
        return "-".join(map(str, qmodel.sizes))
    parts = [
        f"conv{q.out_features}" + ("-pool" if q.pool else "")
        if q.kind == "conv"
        else str(q.out_features)
        for q in qmodel.layers
    ]
    return f"CNN {'x'.join(map(str, qmodel.input_shape))} {'-'.join(parts)}"


def _architecture(float_model) -> dict:
    """:func:`systolic.host.nn.train.train` arguments for a network like ``float_model``."""
    if isinstance(float_model, Cnn):
        return {"model": "cnn", "channels": float_model.channels}
    return {"model": "mlp", "hidden": tuple(float_model.sizes[1:-1])}


def breakdowns(qmodel, x, arrays, clock_override=None):
    """Where the cycles of one image go at batch 1 (the exact cycle model,
    :func:`systolic.host.metrics.cycle_breakdown`), per array size, steady state: the preamble
    and the first image's load are reported apart.

    ``latency_cycles`` is one image alone with the weights already on chip: a program
    of ``x[0]`` without its resident loads, from its first input beat to the END after
    its last result (``cycles - resident_beats``); ``latency_us_at_clock`` is that at
    the clock. ``cycles_per_image`` is the steady-state interval of ``x`` one after
    another."""
    out = []
    for r, c in arrays:
        cfg = sweep_config(r, c)
        prog = compile_model(qmodel, cfg, 1)
        br = metrics.cycle_breakdown(prog, x)
        one = metrics.cycle_breakdown(prog, x[:1])
        latency = one["cycles"] - one["resident_beats"]
        mhz, source = clock_for(CoreConfig(rows=r, cols=c), clock_override)
        n = br["images"]
        per_image = (br["cycles"] - br["start"]) / n
        out.append(
            {
                "rows": r,
                "cols": c,
                "images": n,
                "start_cycles": br["start"],
                "cycles_per_image": per_image,
                "latency_cycles": latency,
                "latency_us_at_clock": latency / mhz,
                "clock_mhz": mhz,
                "clock_source": source,
                "layers": [
                    {
                        **e,
                        **{k: e[k] / n for k in ("matmul_rows", "postproc_rows", "wait", "cycles")},
                    }
                    for e in br["layers"]
                ],
                "padding_cycles": br["padding"]["cycles"] / n,
                "end_cycles": br["end"],
            }
        )
        layers = ", ".join(
            f"layer {e['layer']} {e['cycles']:.0f} (util {e['utilization']:.2f})"
            for e in out[-1]["layers"]
        )
        print(
            f"  breakdown {r}x{c} batch 1: one image {latency:,} cycles "
            f"({latency / mhz:.2f} us at {mhz:.1f} MHz), {per_image:.0f} cycles/image "
            f"streamed: {layers}",
            flush=True,
        )
    return out


def sweep(qmodel, x, labels, arrays, batches, clock_override=None):
    rows = []
    for r, c in arrays:
        cfg = sweep_config(r, c)
        limit = max_batch(qmodel, cfg)
        mhz, source = clock_for(CoreConfig(rows=r, cols=c), clock_override)
        for b in batches:
            eff = min(b, limit)
            prog = compile_model(qmodel, cfg, eff)
            res = get_backend("model", cfg).run(prog, x)
            gold = golden.run(qmodel, x)
            figures = metrics.run_figures(cfg, prog.useful_macs(len(x)), res.status, len(x), mhz)
            cpi = figures["cycles_per_image"]
            rows.append(
                {
                    "rows": r,
                    "cols": c,
                    "batch": b,
                    "batch_run": eff,
                    "images": len(x),
                    **figures,
                    "mismatches": int(np.count_nonzero(res.outputs != gold)),
                    "accuracy": float(np.mean(res.outputs.argmax(1) == labels)),
                    "clock_source": source,
                    "onchip_bytes": metrics.onchip_bytes(prog),
                    "predictions": res.outputs.argmax(1).tolist(),
                }
            )
            print(
                f"  model {r}x{c} batch {b:4d} (run {eff}): {cpi:9.1f} cycles/image, "
                f"utilization {rows[-1]['utilization']:.3f}",
                flush=True,
            )
    return rows


def rtl_samples(qmodel, x, arrays):
    out = []
    for r, c in arrays:
        cfg = CoreConfig(rows=r, cols=c)
        batch = min(64, len(x), max_batch(qmodel, cfg))
        prog = compile_model(qmodel, cfg, batch)
        rtl = get_backend("rtl", cfg)
        rtl.prepare()
        a = rtl.run(prog, x)
        m = get_backend("model", cfg).run(prog, x)
        out.append(
            {
                "rows": r,
                "cols": c,
                "images": len(x),
                "batch": batch,
                "cycles": a.cycles,
                "model_cycles": m.cycles,
                "cycles_equal": a.cycles == m.cycles,
                "outputs_equal": bool(np.array_equal(a.out_beats, m.out_beats)),
                "sim_cycles_per_second": metrics.sim_speed(a.sim_cycles, a.sim_seconds),
            }
        )
        print(
            f"  rtl {r}x{c}: {a.cycles} cycles (model {m.cycles}), outputs equal "
            f"{out[-1]['outputs_equal']}, {out[-1]['sim_cycles_per_second']:.0f} cycles/s",
            flush=True,
        )
    return out


def _warm_worker():
    """Run on each Dask worker before timing: importing this module imports the backends."""
    return True


def sharded(qmodel, x, shard, workers, *, scheduler: str | None = None):
    """Sharded RTL simulation of the default core: 1 worker vs ``workers`` local
    processes (shards of ``shard`` images), and Dask with 1, 2, ..., ``workers``
    workers, each given ``w`` equal shards (one per worker, so every worker is busy
    and the work is the same for every ``w``). Outputs must equal the 1-worker run's.

    ``scheduler``: a Dask scheduler address to use instead of a LocalCluster (its
    workers must see this working directory, where the simulator is built)."""
    from .parallel import connect, local_client, run_shards_dask

    cfg = CoreConfig()
    prog = compile_model(qmodel, cfg, min(64, max_batch(qmodel, cfg)))
    backend = get_backend("rtl", cfg)
    backend.prepare()
    res = {"rows": cfg.rows, "cols": cfg.cols, "load_before": os.getloadavg()[0]}
    ref = run_images(backend, prog, x, shard, 1, progress=False)
    res["one_worker_seconds"] = ref["wall_seconds"]
    par = run_images(backend, prog, x, shard, workers, progress=False)
    res[f"{workers}_workers_seconds"] = par["wall_seconds"]
    res["workers"] = workers
    res["speedup"] = ref["wall_seconds"] / par["wall_seconds"]
    res["identical"] = bool(np.array_equal(ref["outputs"], par["outputs"]))
    if scheduler is None:
        cluster = local_client(workers)
        res["dask_cluster"] = f"LocalCluster, {workers} single-threaded worker processes"
    else:
        cluster = connect(scheduler)
        res["dask_cluster"] = f"scheduler {scheduler}"
    with cluster as client:
        addresses = sorted(client.scheduler_info()["workers"])
        if not addresses:
            raise ValueError(f"Dask scheduler {scheduler}: no workers are connected")
        # every worker imports the backends before the timing: a worker's first task
        # would otherwise pay for importing torch and the host package
        client.run(_warm_worker)
        res["dask_scaling"] = []
        for w in range(1, min(workers, len(addresses)) + 1):
            pieces = np.array_split(x, w)
            t = time.perf_counter()
            results = run_shards_dask(backend, prog, pieces, client, workers=addresses[:w])
            seconds = time.perf_counter() - t
            same = np.array_equal(np.concatenate([r.outputs for r in results]), ref["outputs"])
            res["dask_scaling"].append(
                {
                    "workers": w,
                    "shards": w,
                    "shard_images": [len(p) for p in pieces],
                    "seconds": seconds,
                    "images_per_second": len(x) / seconds,
                    "identical": bool(same),
                }
            )
    base = res["dask_scaling"][0]["seconds"]
    for e in res["dask_scaling"]:
        e["speedup"] = base / e["seconds"]
    top = res["dask_scaling"][-1]
    res["dask_seconds"] = top["seconds"]
    res["dask_identical"] = all(e["identical"] for e in res["dask_scaling"])
    res["images"], res["shard"] = len(x), shard
    res["load_after"] = os.getloadavg()[0]
    print(
        f"  sharded rtl: 1 worker {ref['wall_seconds']:.1f} s, {workers} workers "
        f"{par['wall_seconds']:.1f} s ({_times(res['speedup'], 1)}), dask "
        + ", ".join(f"{e['workers']}w {e['seconds']:.1f} s" for e in res["dask_scaling"])
        + f", identical {res['identical'] and res['dask_identical']}",
        flush=True,
    )
    return res


_times = times  # the wording of ratios, kept under its earlier name


def plots(result, out_dir, labels):
    """The report's PNGs in ``out_dir`` (:func:`systolic.host.report_plots.plots`)."""
    from .report_plots import plots as _plots

    return _plots(result, out_dir, labels)


def report_md(result: dict, prefix: str = "") -> str:
    """The Markdown report of one :func:`bench` result; plots linked as ``prefix`` +
    their file name."""
    return to_markdown(report_blocks(result), prefix)


def report_html(result: dict, prefix: str = "") -> str:
    """The same report as one HTML page (the PNGs as ``<img>`` at ``prefix`` + name)."""
    return to_html(report_blocks(result), f"Benchmark report: {result['network']}", prefix)


class _PhaseClock:
    """Wall seconds of each phase of a run, for the record (``phase_seconds``)."""

    def __init__(self):
        self.seconds, self._t = {}, time.perf_counter()

    def __call__(self, name):
        now = time.perf_counter()
        self.seconds[name] = now - self._t
        self._t = now


def write_combined_report(results: list[dict], subdirs: list[str], out_dir: str) -> None:
    """One ``REPORT.md`` and ``report.html`` in ``out_dir`` for several :func:`bench`
    results whose files are in ``out_dir``/``subdirs``: each result's report one heading
    level down, under its network's name, its plots linked in its folder."""
    blocks = [Heading(1, "Benchmark report")]
    for r, sub in zip(results, subdirs, strict=True):
        for b in report_blocks(r):
            if isinstance(b, Heading):
                b = Heading(b.level + 1, r["network"] if b.level == 1 else b.text)
            elif isinstance(b, Image):
                b = Image(b.alt, f"{sub}/{b.file}")
            blocks.append(b)
    with atomic_write(os.path.join(out_dir, "REPORT.md"), "w") as f:
        f.write(to_markdown(blocks))
    with atomic_write(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(to_html(blocks, "Benchmark report"))


def bench(
    size: str = "quick",
    workers: int = 2,
    out_dir: str = os.path.join("build", "bench"),
    clock_mhz: float | None = None,
    arrays=ARRAYS,
    batches=BATCHES,
    model: str = DEFAULT_CHECKPOINT,
    *,
    scheduler: str | None = None,
    gpu: bool = True,
    ddp: bool = True,
    ddp_epochs: int | None = None,
    ddp_images: int | None = None,
) -> dict:
    """Run the benchmark on ``model`` (a float checkpoint, a quantized model or a
    quantized ONNX file, see :func:`systolic.host.nn.quantize.load_for_inference`).

    Parameters
    ----------
    scheduler : str, optional
        A Dask scheduler address for the sharded simulation (default: a LocalCluster
        of ``workers`` processes).
    gpu : bool
        Measure PyTorch on a CUDA GPU when there is one (the row says when not).
    ddp : bool
        Measure data-parallel training (DDP, gloo, 2 processes).
    ddp_epochs, ddp_images : int, optional
        DDP's epochs, and the images of each (the first of the shuffled order; default:
        the size's, ``SIZES``: whole epochs for ``full``, a slice for ``quick``).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    for name, v in (("ddp_epochs", ddp_epochs), ("ddp_images", ddp_images)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    s = SIZES[size]
    torch.set_num_threads(THREADS)
    clock = _PhaseClock()
    data = load_mnist()
    qmodel, _, float_model = load_for_inference(model, data)
    n = len(data.test_images) if s["sweep"] is None else s["sweep"]
    x = qmodel.quantize_input(data.test_images[:n])
    labels = data.test_labels[:n]
    result = {
        "size": size,
        "model": model,
        "network": network_name(qmodel),
        "data": data.source,
        "torch_version": str(torch.__version__),
        "cores": os.cpu_count() or 1,
        "torch": None,
        "gpu": None,
        "ddp": None,
    }
    if float_model is None:
        print("PyTorch: skipped (an ONNX model has no PyTorch float model)")
    else:
        arch = _architecture(float_model)
        train_kwargs = {"epochs": s["epochs"], **arch}
        min_run = _min_run_time(s["repeat"])
        print("PyTorch on the CPU ...", flush=True)
        images = data.test_images[:256]
        result["torch"] = measure_cpu(model, images, s["torch_batches"], min_run, train_kwargs)
        clock("torch_cpu")
        if gpu:
            print("PyTorch on a CUDA GPU ...", flush=True)
            result["gpu"] = measure_gpu(model, images, s["torch_batches"], min_run, train_kwargs)
        else:
            result["gpu"] = {"skipped": "GPU: skipped (not asked for)"}
        if "skipped" in result["gpu"]:
            print(f"  {result['gpu']['skipped']}", flush=True)
        clock("gpu")
        if ddp:
            print("PyTorch DDP training (gloo, 2 processes) ...", flush=True)
            result["ddp"] = measure_ddp(
                arch,
                s["ddp_images"] if ddp_images is None else ddp_images,
                s["ddp_epochs"] if ddp_epochs is None else ddp_epochs,
            )
            d = result["ddp"]
            print(
                f"  DDP: {d['images_trained']} images in {sum(d['epoch_seconds']):.2f} s, "
                f"accuracy {d['test_accuracy']:.3f}, ranks equal "
                f"{d['weights_equal_across_ranks']}",
                flush=True,
            )
            clock("ddp")
    print("model sweep ...", flush=True)
    result["sweep"] = sweep(qmodel, x, labels, arrays, batches, clock_mhz)
    result["breakdown"] = breakdowns(qmodel, x[:4], arrays, clock_mhz)
    clock("sweep")
    print("rtl samples ...", flush=True)
    result["rtl"] = rtl_samples(qmodel, x[: s["rtl"]], arrays)
    clock("rtl")
    if workers > 1 or scheduler is not None:
        xs = qmodel.quantize_input(np.resize(data.test_images, (s["shards"], 784)))
        result["sharded"] = sharded(qmodel, xs, s["shard"], workers, scheduler=scheduler)
        clock("sharded")
    result["synth"] = synth_entries()
    os.makedirs(out_dir, exist_ok=True)
    result["plots"] = plots(result, out_dir, labels)
    clock("plots")
    result["phase_seconds"] = clock.seconds
    for e in result["sweep"]:
        e.pop("predictions", None)
    result["comparison"] = comparison_table(result).to_json()
    with atomic_write(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump(result, f, indent=2)
    with atomic_write(os.path.join(out_dir, "REPORT.md"), "w") as f:
        f.write(report_md(result))
    with atomic_write(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(report_html(result))
    return result


def bench_core(cfg: CoreConfig, M: int = 64, K: int = 784, N: int = 128, seed: int = 0) -> dict:
    """One ``M x K`` by ``K x N`` int8 matmul (default: the MNIST first layer at batch 64)
    through the compiler and the rtl backend, checked against the golden model, then the
    same program on Verilator's ceiling (the same harness driven by a small C++ loop
    instead of cocotb), whose result beats must equal the backend's.

    Returns the counters and :func:`systolic.host.metrics.run_figures`, the outputs' mismatches
    against numpy (-1 after a core error), and the simulation speeds: the backend's
    inside the simulator (``sim_cycles_per_second``) and counting its start-up
    (``wall_cycles_per_second``), Verilator's ceiling (``ceiling_cycles_per_second``)
    and the share of it the backend reaches; ``ceiling_equal`` says whether the ceiling's
    result beats are the backend's, byte for byte (``ceiling_cycles`` must be
    ``sim_cycles``). ``ceiling_wall_seconds`` includes its build when it was not built.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    w = rng.integers(-128, 128, (K, N), dtype=np.int8)
    bias = rng.integers(-1000, 1000, N)
    mult, shift = 1 << 30, 40
    program = compile_matmul(K, w, bias, cfg, requant=(mult, shift, 0, False), batch=M)
    backend = get_backend("rtl", cfg)
    t0 = time.perf_counter()
    backend.prepare()
    build_s = time.perf_counter() - t0
    res = backend.run(program, a)
    acc = golden.wrap_int32(golden.matmul_i8(a, w.T) + bias)
    want = golden.requantize(acc, np.full(N, mult), np.full(N, shift), 0, False)
    mismatches = -1 if res.outputs is None else int(np.count_nonzero(res.outputs != want))
    beats = program.beats(a)
    t0 = time.perf_counter()
    ceiling_out, ceiling = backend.ceiling(beats)  # built on first use
    ceiling_s = time.perf_counter() - t0
    speed = metrics.sim_speed(res.sim_cycles, res.sim_seconds)
    ceiling_speed = metrics.sim_speed(ceiling["sim_cycles"], ceiling["sim_seconds"])
    return {
        "rows": cfg.rows,
        "cols": cfg.cols,
        "M": M,
        "K": K,
        "N": N,
        "config": cfg.tag,
        "error": res.error,
        "mismatches": mismatches,
        "predicted_cycles": res.predicted_cycles,
        **metrics.run_figures(cfg, M * K * N, res.status, M),
        "program_beats": int(len(beats)),
        "sim_cycles": res.sim_cycles,
        "sim_cycles_per_second": speed,
        "wall_cycles_per_second": res.sim_cycles / res.wall_seconds,
        "ceiling_cycles": ceiling["sim_cycles"],
        "ceiling_cycles_per_second": ceiling_speed,
        "ceiling_share": speed / ceiling_speed if speed and ceiling_speed else None,
        "ceiling_equal": bool(np.array_equal(ceiling_out, res.out_beats)),
        "build_seconds": build_s,
        "wall_seconds": res.wall_seconds,
        "ceiling_wall_seconds": ceiling_s,
    }
