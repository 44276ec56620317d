"""``make bench``: the core against PyTorch on this machine's CPU, measured in one run.

Writes ``build/bench/bench.json``, ``build/bench/REPORT.md`` and PNG plots:

* array sizes 4x4, 8x8, 16x16 x batch 1, 8, 64, 256 on the model backend (exact
  cycles): cycles per image, utilization, images/s and latency at the synthesized
  Fmax (or a stated default clock), on-chip memory the program needs;
* a sample of each size on the rtl backend: outputs and cycles equal to the model's,
  and the simulation speed;
* PyTorch float and int8 on the CPU: latency at batch 1, throughput at batch 256,
  training time, peak memory;
* sharded RTL runs: 1 worker vs ``--workers`` local processes vs a Dask cluster,
  with byte-identical outputs.

``--size quick`` runs a CI-sized version of the same measurements.
"""

import json
import multiprocessing
import os
import resource
import time

import numpy as np
import torch
import torch.utils.benchmark as benchmark

from hw.config import CoreConfig

from . import golden, metrics
from .backends import get_backend
from .compile import compile_matmul, compile_model, max_batch
from .files import atomic_write
from .nn.checkpoint import DEFAULT_CHECKPOINT, Cnn, to_input
from .nn.data import load_mnist
from .nn.quantize import load_for_inference
from .nn.train import train
from .run import clock_for, run_images

__all__ = ["bench", "bench_core", "report_md", "SIZES"]

ARRAYS = [(4, 4), (8, 8), (16, 16)]
BATCHES = [1, 8, 64, 256]
SIZES = {  # images in the model sweep, RTL sample images, sharded-run images, torch repeats
    "quick": {"sweep": 64, "rtl": 16, "shards": 64, "shard": 32, "repeat": 50},
    "full": {"sweep": None, "rtl": 128, "shards": 512, "shard": 128, "repeat": 1000},
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


def _torch_child(queue, model_path, images, repeat, sizes_train):
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data = load_mnist()
    _, tq, float_model = load_for_inference(model_path, data)
    out = {"load_before": os.getloadavg()[0]}
    # int8: PyTorch's execution of the PT2E-converted graph (QDQ, float32 arithmetic).
    # torch.utils.benchmark: warm-up, then blocks of runs; the median and the spread.
    for name, model in (("float", float_model), ("int8", tq.module)):
        figures = {}
        with torch.no_grad():
            for batch, key in ((1, "batch1"), (256, "batch256")):
                x = to_input(np.resize(images, (batch, images.shape[1])))
                for _ in range(3):
                    model(x)
                m = benchmark.Timer(
                    stmt="model(x)", globals={"model": model, "x": x}
                ).blocked_autorange(min_run_time=max(0.2, repeat / 2000))
                figures[f"seconds_{key}"] = {"median": m.median, "iqr": m.iqr, "runs": len(m.times)}
        lat = figures["seconds_batch1"]["median"]
        out[name] = {
            "latency_us_batch1": lat * 1e6,
            "images_per_second_batch1": 1 / lat,
            "images_per_second_batch256": 256 / figures["seconds_batch256"]["median"],
            "timing": figures,
        }
    t = time.perf_counter()
    _, meta = train(data, progress=False, **sizes_train)
    out["train_seconds"] = time.perf_counter() - t
    out["train_epochs"] = meta["epochs"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_after"] = os.getloadavg()[0]
    queue.put(out)


def measure_torch(model_path, images, repeat, epochs, architecture):
    """PyTorch on the CPU, in a child process so that its peak memory is its own: the float
    model and the converted int8 graph of ``model_path``, and training a network of the
    same ``architecture`` (:func:`host.nn.train.train` keyword arguments)."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(
        target=_torch_child,
        args=(q, model_path, images, repeat, {"epochs": epochs, **architecture}),
    )
    p.start()
    out = q.get()
    p.join()
    out["threads"] = min(2, os.cpu_count() or 1)
    return out


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
    """:func:`host.nn.train.train` arguments for a network like ``float_model``."""
    if isinstance(float_model, Cnn):
        return {"model": "cnn", "channels": float_model.channels}
    return {"model": "mlp", "hidden": tuple(float_model.sizes[1:-1])}


def breakdowns(qmodel, x, arrays, clock_override=None):
    """Where the cycles of one image go at batch 1 (the exact cycle model,
    :func:`host.metrics.cycle_breakdown`), per array size, steady state: the preamble
    and the first image's load are reported apart."""
    out = []
    for r, c in arrays:
        cfg = sweep_config(r, c)
        br = metrics.cycle_breakdown(compile_model(qmodel, cfg, 1), x)
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
                "latency_us_at_clock": per_image / mhz,
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
        print(f"  breakdown {r}x{c} batch 1: {per_image:.0f} cycles/image: {layers}", flush=True)
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
        prog = compile_model(qmodel, cfg, min(64, len(x), max_batch(qmodel, cfg)))
        rtl = get_backend("rtl", cfg)
        rtl.prepare()
        a = rtl.run(prog, x)
        m = get_backend("model", cfg).run(prog, x)
        out.append(
            {
                "rows": r,
                "cols": c,
                "images": len(x),
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


def sharded(qmodel, x, shard, workers, scheduler: str | None = None):
    from .parallel import connect, local_client, run_shards_dask

    cfg = CoreConfig()
    prog = compile_model(qmodel, cfg, min(64, max_batch(qmodel, cfg)))
    backend = get_backend("rtl", cfg)
    backend.prepare()
    res = {}
    ref = run_images(backend, prog, x, shard, 1, progress=False)
    res["one_worker_seconds"] = ref["wall_seconds"]
    par = run_images(backend, prog, x, shard, workers, progress=False)
    res[f"{workers}_workers_seconds"] = par["wall_seconds"]
    res["workers"] = workers
    res["speedup"] = ref["wall_seconds"] / par["wall_seconds"]
    res["identical"] = bool(np.array_equal(ref["outputs"], par["outputs"]))
    pieces = [x[i : i + shard] for i in range(0, len(x), shard)]
    res["dask_scheduler"] = scheduler or f"LocalCluster of {workers}"
    with connect(scheduler) if scheduler else local_client(workers) as client:
        t = time.perf_counter()
        results = run_shards_dask(backend, prog, pieces, client)
        res["dask_seconds"] = time.perf_counter() - t
    res["dask_identical"] = bool(
        np.array_equal(np.concatenate([r.outputs for r in results]), ref["outputs"])
    )
    res["images"], res["shard"] = len(x), shard
    print(
        f"  sharded rtl: 1 worker {ref['wall_seconds']:.1f} s, {workers} workers "
        f"{par['wall_seconds']:.1f} s (x{res['speedup']:.2f}), dask "
        f"{res['dask_seconds']:.1f} s, identical {res['identical'] and res['dask_identical']}",
        flush=True,
    )
    return res


def plots(result, out_dir, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, c in ARRAYS:
        pts = [
            (e["batch"], e["utilization"])
            for e in result["sweep"]
            if (e["rows"], e["cols"]) == (r, c)
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{r}x{c}")
    ax.set(
        xscale="log",
        xlabel="batch",
        ylabel="utilization (useful MACs / array capacity)",
        ylim=(0, 1.05),
        title=f"Array utilization, MNIST {result['network']}",
    )
    batches = sorted({e["batch"] for e in result["sweep"]})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.axhline(0.9, color="grey", ls=":", lw=1)
    ax.legend()
    files["utilization"] = os.path.join(out_dir, "utilization.png")
    fig.tight_layout()
    fig.savefig(files["utilization"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    names, vals = [], []
    for e in result["sweep"]:
        if e["batch"] in (1, 256):
            names.append(f"core {e['rows']}x{e['cols']}\nb{e['batch']}")
            vals.append(e["images_per_second_at_clock"])
    t = result["torch"]
    core = len(vals)
    for kind in ("float", "int8") if t else ():
        names += [f"torch {kind}\nb1", f"torch {kind}\nb256"]
        vals += [t[kind]["images_per_second_batch1"], t[kind]["images_per_second_batch256"]]
    ax.bar(range(len(vals)), vals, color=["tab:blue"] * core + ["tab:orange"] * (len(vals) - core))
    ax.set_xticks(range(len(vals)), names, fontsize=7)
    ax.set(yscale="log", ylabel="images / second", title="Throughput: core at its clock vs CPU")
    files["throughput"] = os.path.join(out_dir, "throughput.png")
    fig.tight_layout()
    fig.savefig(files["throughput"], dpi=110)
    plt.close(fig)

    chosen = next(
        (e for e in result["sweep"] if (e["rows"], e["cols"], e["batch"]) == (8, 8, 64)),
        result["sweep"][-1],
    )
    pred = chosen["predictions"]
    cm = np.zeros((10, 10), int)
    for p, y in zip(pred, labels, strict=True):
        cm[y, p] += 1
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(cm, cmap="Blues")
    for i in range(10):
        for j in range(10):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    cm[i, j],
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
    ax.set(
        xlabel="core prediction",
        ylabel="label",
        xticks=range(10),
        yticks=range(10),
        title=f"Confusion matrix, {chosen['rows']}x{chosen['cols']} core (int8)",
    )
    fig.colorbar(im)
    files["confusion"] = os.path.join(out_dir, "confusion.png")
    fig.tight_layout()
    fig.savefig(files["confusion"], dpi=110)
    plt.close(fig)
    return files


def report_md(result: dict, prefix: str = "") -> str:
    """The Markdown report of one :func:`bench` result; plots linked as ``prefix`` +
    their file name."""
    t = result["torch"]
    cpu = (
        f"PyTorch {result['torch_version']} on {t['threads']} CPU threads."
        if t
        else "No PyTorch comparison: an ONNX model has no PyTorch float model."
    )
    lines = [
        "# Benchmark report",
        "",
        f"Model: {result['model']} ({result['network']}). Data: {result['data']}; "
        f"{result['sweep'][0]['images']} test images in the sweep. {cpu}",
        "",
        "## Core (model backend, exact cycles)",
        "",
        "| array | batch | run as | cycles/image | utilization | clock (MHz) | images/s | "
        "latency (us) | on-chip bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result["sweep"]:
        lat = f"{e['cycles_per_image'] / e['clock_mhz']:.1f}"
        lines.append(
            f"| {e['rows']}x{e['cols']} | {e['batch']} | {e['batch_run']} | "
            f"{e['cycles_per_image']:.1f} | {e['utilization']:.3f} | {e['clock_mhz']:.0f} | "
            f"{e['images_per_second_at_clock']:,.0f} | {lat} | "
            f"{e['onchip_bytes']['total']:,} |"
        )
    lines += ["", f"Clock: {result['sweep'][0]['clock_source']}."]
    lines += _breakdown_md(result.get("breakdown", []))
    if t:
        lines += _torch_md(result)
    lines += [
        "",
        "## RTL samples (Verilator)",
        "",
        "| array | images | cycles | model cycles | outputs equal | sim cycles/s |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["rtl"]:
        lines.append(
            f"| {s['rows']}x{s['cols']} | {s['images']} | {s['cycles']} | "
            f"{s['model_cycles']} | {s['outputs_equal']} | "
            f"{s['sim_cycles_per_second']:,.0f} |"
        )
    sh = result.get("sharded")
    if sh:
        w = sh["workers"]
        lines += [
            "",
            "## Sharded RTL simulation",
            "",
            f"{sh['images']} images in shards of {sh['shard']}: 1 worker "
            f"{sh['one_worker_seconds']:.1f} s, {w} local workers "
            f"{sh[f'{w}_workers_seconds']:.1f} s (speed-up {sh['speedup']:.2f}), Dask "
            f"LocalCluster with {w} workers {sh['dask_seconds']:.1f} s; outputs identical: "
            f"{sh['identical'] and sh['dask_identical']}.",
        ]
    lines += [
        "",
        f"![utilization]({prefix}utilization.png)",
        f"![throughput]({prefix}throughput.png)",
        f"![confusion]({prefix}confusion.png)",
        "",
    ]
    return "\n".join(lines)


def _breakdown_md(rows):
    if not rows:
        return []
    lines = [
        "",
        "## Where the cycles of one image go (batch 1, exact cycle model)",
        "",
        "Steady state: per image once the weights are resident (the preamble and the first "
        "image's load, `start`, are counted apart). `wait`: cycles between a layer's "
        "instructions that issue none of its rows (the drain when the engine switches "
        "between MATMUL and POSTPROC, or waiting for the front end). Utilization: the "
        "layer's MACs over rows x cols x its cycles.",
        "",
        "| array | layer | MACs | MATMUL rows | POSTPROC rows | wait | cycles | utilization |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in rows:
        for e in b["layers"]:
            lines.append(
                f"| {b['rows']}x{b['cols']} | {e['layer']} | {e['macs'] / b['images']:,.0f} | "
                f"{e['matmul_rows']:,.0f} | {e['postproc_rows']:,.0f} | {e['wait']:,.0f} | "
                f"{e['cycles']:,.0f} | {e['utilization']:.3f} |"
            )
        lines.append(
            f"| {b['rows']}x{b['cols']} | all | | | | | **{b['cycles_per_image']:,.0f}** "
            f"({b['latency_us_at_clock']:.1f} us at {b['clock_mhz']:.0f} MHz; padding "
            f"{b['padding_cycles']:.0f}, start {b['start_cycles']:,}) | |"
        )
    return lines


def _times(core, cpu):
    """``core`` against ``cpu`` (both rates, higher is better) as "3.8x faster" or
    "3.8x slower", never a ratio below 1."""
    r = core / cpu
    return f"{r:.2f}x faster" if r >= 1 else f"{1 / r:.2f}x slower"


def _torch_md(result):
    t = result["torch"]
    lines = [
        "",
        "## PyTorch on this CPU",
        "",
        "Medians of `torch.utils.benchmark` blocks (warm-up first); the spread is the "
        "interquartile range of the blocks. int8 is PyTorch executing the PT2E-converted "
        "QDQ graph (float32 arithmetic between quantize and dequantize nodes).",
        "",
        "| model | latency batch 1 (us) | spread b1 (us) | images/s batch 1 | "
        "images/s batch 256 | spread b256 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for k in ("float", "int8"):
        tm = t[k].get("timing", {})
        iqr1 = tm.get("seconds_batch1", {}).get("iqr", float("nan")) * 1e6
        iqr256 = tm.get("seconds_batch256", {}).get("iqr", float("nan")) * 1e3
        lines.append(
            f"| {k} | {t[k]['latency_us_batch1']:.1f} | {iqr1:.1f} | "
            f"{t[k]['images_per_second_batch1']:,.0f} | "
            f"{t[k]['images_per_second_batch256']:,.0f} | {iqr256:.2f} |"
        )
    cores = os.cpu_count() or 1
    load = max(t.get("load_before", 0), t.get("load_after", 0))
    lines += [
        "",
        f"Load average (1 min) around the PyTorch timings: {t.get('load_before', 0):.1f} "
        f"before, {t.get('load_after', 0):.1f} after, on {cores} cores"
        + (
            f" (**loaded: above {cores / 2:.0f}; these CPU figures and the ratios below are "
            f"unreliable**)."
            if load > cores / 2
            else "."
        ),
        "",
        f"Training ({t['train_epochs']} epochs): {t['train_seconds']:.1f} s; peak "
        f"memory of the PyTorch process: {t['peak_rss_mb']:.0f} MB.",
        "",
        "## Core vs CPU (ratios from this run)",
        "",
        "| array | core images/s (batch 256, or the most that fits) | vs torch float b256 | "
        "vs torch int8 b256 | "
        "core latency b1 (us) | vs torch float b1 | vs torch int8 b1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, c in ARRAYS:
        es = {e["batch"]: e for e in result["sweep"] if (e["rows"], e["cols"]) == (r, c)}
        if 256 not in es or 1 not in es:
            continue
        thr = es[256]["images_per_second_at_clock"]
        lat = es[1]["cycles_per_image"] / es[1]["clock_mhz"]
        run = es[256]["batch_run"]
        lines.append(
            f"| {r}x{c} | {thr:,.0f}{'' if run == 256 else f' (batch {run})'} | "
            f"{_times(thr, t['float']['images_per_second_batch256'])} | "
            f"{_times(thr, t['int8']['images_per_second_batch256'])} | {lat:.1f} | "
            f"{_times(t['float']['latency_us_batch1'], lat)} | "
            f"{_times(t['int8']['latency_us_batch1'], lat)} |"
        )
    return lines


def bench(
    size: str = "quick",
    workers: int = 2,
    out_dir: str = os.path.join("build", "bench"),
    clock_mhz: float | None = None,
    arrays=ARRAYS,
    batches=BATCHES,
    model: str = DEFAULT_CHECKPOINT,
    scheduler: str | None = None,
) -> dict:
    """Run the benchmark on ``model`` (a float checkpoint, a quantized model or a
    quantized ONNX file, see :func:`host.nn.quantize.load_for_inference`); the sharded
    Dask run uses the cluster at ``scheduler`` (``tcp://HOST:PORT``) if given, else a
    local one."""
    s = SIZES[size]
    torch.set_num_threads(min(2, os.cpu_count() or 1))
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
        "torch": None,
    }
    if float_model is None:
        print("PyTorch on the CPU: skipped (an ONNX model has no PyTorch float model)")
    else:
        print("PyTorch on the CPU ...", flush=True)
        result["torch"] = measure_torch(
            model,
            data.test_images[:256],
            s["repeat"],
            epochs=10 if size == "full" else 2,
            architecture=_architecture(float_model),
        )
    print("model sweep ...", flush=True)
    result["sweep"] = sweep(qmodel, x, labels, arrays, batches, clock_mhz)
    result["breakdown"] = breakdowns(qmodel, x[:4], arrays, clock_mhz)
    print("rtl samples ...", flush=True)
    result["rtl"] = rtl_samples(qmodel, x[: s["rtl"]], arrays)
    if workers > 1 or scheduler is not None:
        xs = qmodel.quantize_input(np.resize(data.test_images, (s["shards"], 784)))
        result["sharded"] = sharded(qmodel, xs, s["shard"], workers, scheduler=scheduler)
    os.makedirs(out_dir, exist_ok=True)
    result["plots"] = plots(result, out_dir, labels)
    for e in result["sweep"]:
        e.pop("predictions", None)
    with atomic_write(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump(result, f, indent=2)
    with atomic_write(os.path.join(out_dir, "REPORT.md"), "w") as f:
        f.write(report_md(result))
    return result


def bench_core(cfg: CoreConfig, M: int = 64, K: int = 784, N: int = 128, seed: int = 0) -> dict:
    """One ``M x K`` by ``K x N`` int8 matmul (default: the MNIST first layer at batch 64)
    through the compiler and the rtl backend, checked against the golden model, then the
    same program on Verilator's ceiling (the same harness driven by a small C++ loop
    instead of cocotb), whose result beats must equal the backend's.

    Returns the counters and :func:`host.metrics.run_figures`, the outputs' mismatches
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
