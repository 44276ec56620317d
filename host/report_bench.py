"""The bench's report: one :func:`systolic.host.bench.bench` result as report blocks
(:mod:`systolic.host.report`), the comparison table first.

Figures are either measured here (PyTorch timings, RTL simulation, DDP training, Dask
runs) or modelled (the core: exact cycle counts of the model backend at the
synthesized or stated clock); every core figure says so. A blank cell is ``n/a``
with a footnote giving the reason. A figure measured while the machine was loaded
(1-minute load average above half its cores) is flagged as unreliable.
"""

import json
import os
import statistics

from .report import Heading, Image, Table, Text, times
from .run import SYNTH_REPORT

__all__ = ["comparison_table", "is_loaded", "report_blocks", "synth_entries"]

COLUMNS = [
    "platform",
    "training time / epoch",
    "batch-1 latency",
    "throughput, batch 256",
    "throughput, best batch",
    "peak memory",
    "notes",
]


def synth_entries(report: str = SYNTH_REPORT) -> list[dict]:
    """The ECP5 entries of the synthesis report that fit (rows, cols, LUTs, FFs, DSPs,
    BRAMs, Fmax), or [] when there is no report."""
    try:
        with open(report) as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return []
    keys = ("rows", "cols", "luts", "ffs", "dsps", "brams", "fmax_mhz", "device")
    return [
        {k: e.get(k) for k in keys}
        for e in entries
        if e.get("family") == "ecp5" and e.get("fits") and e.get("fmax_mhz")
    ]


def is_loaded(figures: dict, cores: int) -> bool:
    """Whether the load around ``figures`` (``load_before``/``load_after``) was above half
    the ``cores``: other work then shares the CPU, and timings are unreliable."""
    load = max(figures.get("load_before", 0), figures.get("load_after", 0))
    return load > cores / 2


def _load_note(t: Table, figures: dict, cores: int) -> str:
    """A footnote marker when ``figures`` were measured on a loaded machine, else ""."""
    if not is_loaded(figures, cores):
        return ""
    load = max(figures.get("load_before", 0), figures.get("load_after", 0))
    return f" (load {load:.1f}) " + t.note(
        f"measured while the 1-minute load average was above half of the {cores} cores "
        "(the figure in brackets, the most seen around the measurement): other work "
        "shared the CPU, so this figure is unreliable"
    )


def _lat(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def _rate(ips: float) -> str:
    return f"{ips:,.0f} images/s" if ips >= 100 else f"{ips:,.2f} images/s"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("s" if n != 1 else "")


def _workers(n: int) -> str:
    return _plural(n, "worker")


def _best(batches: list[dict]) -> dict:
    return max(batches, key=lambda e: e["images_per_second"])


def _by_batch(batches: list[dict], b: int) -> dict | None:
    return next((e for e in batches if e["batch"] == b), None)


def _cpu_rows(t: Table, result: dict) -> None:
    tc, cores = result["torch"], result["cores"]
    flag = _load_note(t, tc, cores)
    epochs = tc["train_epochs"]
    for kind in ("float", "int8"):
        f = tc[kind]
        batches = f.get("batches") or [
            {"batch": 1, "median": f["latency_us_batch1"] / 1e6, "iqr": None},
            {"batch": 256, "median": 256 / f["images_per_second_batch256"], "iqr": None},
        ]
        for e in batches:
            e.setdefault("images_per_second", e["batch"] / e["median"])
        b1, b256, best = _by_batch(batches, 1), _by_batch(batches, 256), _best(batches)
        if kind == "float":
            train = (
                f"{tc['train_seconds'] / epochs:.2f} s ({tc['train_images_per_epoch']:,} images; "
                f"mean of {epochs} epochs)"
                if "train_images_per_epoch" in tc
                else f"{tc['train_seconds'] / epochs:.2f} s (mean of {epochs} epochs)"
            )
        else:
            train = t.na("int8 is the float model quantized after training; it is not trained")
        mem = f.get("peak_rss_delta_mb")
        t.add(
            f"CPU: PyTorch {kind} ({_plural(tc['threads'], 'thread')}){flag}",
            train,
            f"{_lat(b1['median'])}" + (f" (IQR {_lat(b1['iqr'])})" if b1.get("iqr") else ""),
            _rate(b256["images_per_second"]),
            f"{_rate(best['images_per_second'])} (batch {best['batch']})",
            f"{mem:,.1f} MiB (RSS increase, inference)"
            if mem is not None
            else t.na("peak RSS needs /proc"),
            "measured"
            + (
                f"; training: {tc['train_peak_rss_delta_mb']:,.1f} MiB RSS increase"
                if kind == "float" and tc.get("train_peak_rss_delta_mb") is not None
                else ""
            ),
        )


def _gpu_rows(t: Table, result: dict) -> None:
    g = result["gpu"]
    if "skipped" in g:
        na = t.na(g["skipped"])
        t.add("GPU", na, na, na, na, na, g["skipped"])
        return
    flag = _load_note(t, g, result["cores"])
    eager, graph = g["eager"], g["graph_batch1"]
    b1, b256, best = _by_batch(eager, 1), _by_batch(eager, 256), _best(eager)
    mib = 1 << 20
    t.add(
        f"GPU {g['device']}: PyTorch float, eager{flag}",
        f"{g['train_seconds'] / g['train_epochs']:.2f} s ({g['train_images_per_epoch']:,} "
        f"images; mean of {g['train_epochs']} epochs)",
        f"{_lat(b1['median'])} (IQR {_lat(b1['iqr'])})",
        _rate(b256["images_per_second"]),
        f"{_rate(best['images_per_second'])} (batch {best['batch']})",
        f"{g['inference_peak_bytes'] / mib:,.1f} MiB (max allocated, inference)",
        f"measured, CUDA {g['cuda']}; training: {g['train_peak_bytes'] / mib:,.1f} MiB "
        f"max allocated, test accuracy {g['train_test_accuracy']:.3f}",
    )
    only = t.na("the CUDA graph is captured for batch-1 inference only")
    t.add(
        f"GPU {g['device']}: PyTorch float, CUDA graph{flag}",
        only,
        f"{_lat(graph['median'])} (IQR {_lat(graph['iqr'])})",
        only,
        only,
        only,
        f"measured; outputs equal eager: {graph['equals_eager']}",
    )


def _core_rows(t: Table, result: dict) -> None:
    arrays = sorted({(e["rows"], e["cols"]) for e in result["sweep"]})
    for r, c in arrays:
        es = [  # the batch the images really ran at: never more than were run
            {
                **e,
                "batch_effective": min(e["batch_run"], e["images"]),
                "images_per_second": e["images_per_second_at_clock"],
            }
            for e in result["sweep"]
            if (e["rows"], e["cols"]) == (r, c)
        ]
        e1 = next((e for e in es if e["batch"] == 1), None)
        e256 = next((e for e in es if e["batch"] == 256), None)
        best = max(es, key=lambda e: e["images_per_second"])
        clock = t.note(f"{r}x{c} clock: {es[0]['clock_source']}")
        if e256 is None:
            thr = t.na("batch 256 is not among this run's batches")
        else:
            thr = _rate(e256["images_per_second"]) + " (modelled)"
            if e256["batch_effective"] != 256:
                why = (
                    "the most that fits on chip"
                    if e256["batch_run"] < 256
                    else f"only {e256['images']} images were run"
                )
                thr += f" at batch {e256['batch_effective']} ({why})"
        rtl = [s for s in result["rtl"] if (s["rows"], s["cols"]) == (r, c)]
        if not rtl:
            confirmed = "no RTL sample"
        elif all(s["outputs_equal"] and s["cycles_equal"] for s in rtl):
            confirmed = f"RTL-confirmed: {sum(s['images'] for s in rtl)} images (outputs, cycles)"
        else:
            confirmed = "**RTL disagreed with the cycle model**"
        one = next(
            (b for b in result.get("breakdown", []) if (b["rows"], b["cols"]) == (r, c)), None
        )
        if one is not None and "latency_cycles" in one:
            lat = f"{one['latency_us_at_clock']:,.2f} us (modelled: one image, weights on chip)"
        elif e1:
            lat = f"{e1['cycles_per_image'] / e1['clock_mhz']:,.1f} us (modelled)"
        else:
            lat = t.na("batch 1 is not among this run's batches")
        t.add(
            f"core {r}x{c} at {es[0]['clock_mhz']:.0f} MHz {clock} (model backend)",
            t.na("the core runs inference only"),
            lat,
            thr,
            f"{_rate(best['images_per_second'])} (modelled, batch {best['batch_effective']})",
            f"{max(e['onchip_bytes']['total'] for e in es):,} B on chip (the program's need)",
            f"modelled: exact cycles x clock; {confirmed}",
        )


def _ddp_row(t: Table, result: dict) -> None:
    d = result["ddp"]
    flag = _load_note(t, d, result["cores"])
    per = statistics.median(d["epoch_seconds"])
    if d["epoch_fraction"] < 1:
        train = (
            f"{per:.2f} s for {d['images_per_epoch']:,} images "
            f"({d['epoch_fraction']:.0%} of an epoch)"
        )
    else:
        train = f"{per:.2f} s ({d['images_per_epoch']:,} images; median of {d['epochs']} epochs)"
    only = t.na("training only")
    tc = result.get("torch") or {}
    vs = ""
    if tc.get("train_images_per_epoch"):  # images/s against one process (same threads)
        one = tc["train_images_per_epoch"] * tc["train_epochs"] / tc["train_seconds"]
        vs = f"; vs one process: {times(d['images_per_epoch'] / per, one)} (images/s)"
    mem = [m for m in d["peak_rss_delta_mb_per_rank"] if m is not None]
    t.add(
        f"distributed training: PyTorch DDP, {d['backend']}, {d['world']} processes x "
        f"{_plural(d.get('threads', 1), 'thread')}{flag}",
        train,
        only,
        only,
        only,
        f"{max(mem):,.1f} MiB per process (RSS increase, the most of the ranks)"
        if mem
        else t.na("peak RSS needs /proc"),
        f"measured; test accuracy {d['test_accuracy']:.3f} after {d['images_trained']:,} "
        f"images; ranks' weights equal: {d['weights_equal_across_ranks']}; max difference "
        f"from one process: {d['max_abs_diff_vs_one_process']:.1e}{vs}",
    )


def _dask_row(t: Table, result: dict) -> None:
    sh = result["sharded"]
    flag = _load_note(t, sh, result["cores"])
    best = max(sh["dask_scaling"], key=lambda e: e["images_per_second"])
    sim = t.na("a simulation's speed, not the core's: see the core rows")
    speedups = ", ".join(
        f"{e['workers']} workers: {times(e['speedup'], 1)}" for e in sh["dask_scaling"][1:]
    )
    t.add(
        f"distributed simulation: Dask, RTL of the {sh['rows']}x{sh['cols']} core{flag}",
        t.na("simulation only"),
        sim,
        sim,
        f"{_rate(best['images_per_second'])} simulated ({_workers(best['workers'])}, "
        f"{sh['images']} images)",
        t.na("not measured for the simulator processes"),
        f"measured; vs 1 worker: {speedups or 'no other count run'}; outputs identical: "
        f"{sh['dask_identical']}",
    )


def comparison_table(result: dict) -> Table:
    """One row a platform: CPU, GPU, the core per array size, DDP training, Dask."""
    t = Table(list(COLUMNS))
    if result["torch"] is None:
        na = t.na("an ONNX model has no PyTorch float model")
        t.add("PyTorch (CPU, GPU, DDP)", na, na, na, na, na, "not run")
    else:
        _cpu_rows(t, result)
        if result.get("gpu"):
            _gpu_rows(t, result)
    _core_rows(t, result)
    if result.get("ddp"):
        _ddp_row(t, result)
    if result.get("sharded") and result["sharded"].get("dask_scaling"):
        _dask_row(t, result)
    return t


def _sweep_table(result):
    t = Table(
        [
            "array",
            "batch",
            "run as",
            "cycles/image",
            "utilization",
            "clock (MHz)",
            "images/s (modelled)",
            "latency (us, modelled)",
            "on-chip bytes",
        ]
    )
    for e in result["sweep"]:
        eff = min(e["batch_run"], e["images"])
        t.add(
            f"{e['rows']}x{e['cols']}",
            e["batch"],
            eff,
            f"{e['cycles_per_image']:.1f}",
            f"{e['utilization']:.3f}",
            f"{e['clock_mhz']:.0f}",
            f"{e['images_per_second_at_clock']:,.0f}",
            f"{e['cycles_per_image'] / e['clock_mhz']:.1f}",
            f"{e['onchip_bytes']['total']:,}",
        )
    return t


def _breakdown_blocks(rows):
    if not rows:
        return []
    t = Table(
        ["array", "layer", "MACs", "MATMUL rows", "POSTPROC rows", "wait", "cycles", "utilization"]
    )
    for b in rows:
        for e in b["layers"]:
            t.add(
                f"{b['rows']}x{b['cols']}",
                e["layer"],
                f"{e['macs'] / b['images']:,.0f}",
                f"{e['matmul_rows']:,.0f}",
                f"{e['postproc_rows']:,.0f}",
                f"{e['wait']:,.0f}",
                f"{e['cycles']:,.0f}",
                f"{e['utilization']:.3f}",
            )
        t.add(
            f"{b['rows']}x{b['cols']}",
            "all",
            "",
            "",
            "",
            "",
            f"**{b['cycles_per_image']:,.0f}** streamed; one image alone "
            f"**{b['latency_cycles']:,}** ({b['latency_us_at_clock']:.2f} us at "
            f"{b['clock_mhz']:.1f} MHz; padding {b['padding_cycles']:.0f}, start "
            f"{b['start_cycles']:,})",
            "",
        )
    return [
        Heading(2, "Where the cycles of one image go (batch 1, exact cycle model)"),
        Text(
            "Steady state: per image once the weights are resident (the preamble and the "
            "first image's load, `start`, are counted apart); one image alone: its input "
            "load, its layers and its results with the weights already on chip, the "
            "batch-1 latency. `wait`: cycles between a "
            "layer's instructions that issue none of its rows (the drain when the engine "
            "switches between MATMUL and POSTPROC, or waiting for the front end). "
            "Utilization: the layer's MACs over rows x cols x its cycles."
        ),
        t,
    ]


def _torch_blocks(result):
    tc, cores = result["torch"], result["cores"]
    t = Table(["model", "batch", "median per call", "IQR", "images/s", "timed blocks"])
    for kind in ("float", "int8"):
        for e in tc[kind].get("batches", []):
            t.add(
                f"CPU {kind}",
                e["batch"],
                _lat(e["median"]),
                _lat(e["iqr"]),
                _rate(e["images_per_second"]),
                e["blocks"],
            )
    g = result.get("gpu") or {}
    for e in g.get("eager", []):
        t.add(
            "GPU float, eager",
            e["batch"],
            _lat(e["median"]),
            _lat(e["iqr"]),
            _rate(e["images_per_second"]),
            e["blocks"],
        )
    if "graph_batch1" in g:
        e = g["graph_batch1"]
        t.add("GPU float, CUDA graph", 1, _lat(e["median"]), _lat(e["iqr"]), "", e["blocks"])
    load = max(tc.get("load_before", 0), tc.get("load_after", 0))
    blocks = [
        Heading(2, "PyTorch, measured"),
        Text(
            "`torch.utils.benchmark` medians of timed blocks after a warm-up; the spread is "
            "the interquartile range of the blocks. int8 is PyTorch executing the "
            "PT2E-converted QDQ graph (float32 arithmetic between quantize and dequantize "
            "nodes). Inputs of a batch larger than 256 repeat the 256 test images."
        ),
        t,
        Text(
            f"Load average (1 min) around the CPU timings: {tc.get('load_before', 0):.1f} "
            f"before, {tc.get('load_after', 0):.1f} after, on {cores} cores"
            + (
                f" (**loaded: above {cores / 2:.0f}; these CPU figures and the ratios below "
                "are unreliable**)."
                if load > cores / 2
                else "."
            )
        ),
    ]
    ratio = Table(
        [
            "array",
            "core images/s (batch 256, or the most that ran)",
            "vs CPU float b256",
            "vs CPU int8 b256",
            "core latency b1 (us)",
            "vs CPU float b1",
            "vs CPU int8 b1",
        ]
    )
    for r, c in sorted({(e["rows"], e["cols"]) for e in result["sweep"]}):
        es = {e["batch"]: e for e in result["sweep"] if (e["rows"], e["cols"]) == (r, c)}
        if 256 not in es or 1 not in es:
            continue
        thr = es[256]["images_per_second_at_clock"]
        one = next(
            (b for b in result.get("breakdown", []) if (b["rows"], b["cols"]) == (r, c)), None
        )  # one image with its weights on chip, else the batch-1 sweep's interval
        lat = (
            one["latency_us_at_clock"]
            if one is not None and "latency_cycles" in one
            else es[1]["cycles_per_image"] / es[1]["clock_mhz"]
        )
        eff = min(es[256]["batch_run"], es[256]["images"])
        ratio.add(
            f"{r}x{c}",
            f"{thr:,.0f}{'' if eff == 256 else f' (batch {eff})'}",
            times(thr, tc["float"]["images_per_second_batch256"]),
            times(thr, tc["int8"]["images_per_second_batch256"]),
            f"{lat:.1f}",
            times(tc["float"]["latency_us_batch1"], lat),
            times(tc["int8"]["latency_us_batch1"], lat),
        )
    if ratio.rows:
        blocks += [
            Heading(2, "Core (modelled) vs CPU (measured): ratios from this run"),
            Text("The core is faster or slower by the factor shown."),
            ratio,
        ]
    return blocks


def _rtl_blocks(result):
    t = Table(["array", "images", "cycles", "model cycles", "outputs equal", "sim cycles/s"])
    for s in result["rtl"]:
        t.add(
            f"{s['rows']}x{s['cols']}",
            s["images"],
            s["cycles"],
            s["model_cycles"],
            s["outputs_equal"],
            f"{s['sim_cycles_per_second']:,.0f}",
        )
    return [Heading(2, "RTL samples (Verilator)"), t]


def _sharded_blocks(result):
    sh = result.get("sharded")
    if not sh:
        return []
    w = sh["workers"]
    blocks = [
        Heading(2, "Sharded RTL simulation"),
        Text(
            f"{sh['images']} images in shards of {sh['shard']}: 1 worker "
            f"{sh['one_worker_seconds']:.1f} s, {w} local worker processes "
            f"{sh[f'{w}_workers_seconds']:.1f} s ({times(sh['speedup'], 1)}); outputs "
            f"identical: {sh['identical']}."
        ),
    ]
    if sh.get("dask_scaling"):
        t = Table(["Dask workers", "shards (images each)", "seconds", "images/s", "vs 1 worker"])
        for e in sh["dask_scaling"]:
            t.add(
                e["workers"],
                f"{e['shards']} ({', '.join(map(str, e['shard_images']))})",
                f"{e['seconds']:.2f}",
                f"{e['images_per_second']:.2f}",
                times(e["speedup"], 1),
            )
        blocks += [
            Text(
                f"Dask ({sh.get('dask_cluster', 'LocalCluster')}): each run gives its "
                "workers one equal shard each, so every worker is busy and the work is the "
                f"same at every count; outputs identical to the 1-worker run: "
                f"{sh['dask_identical']}."
            ),
            t,
        ]
    return blocks


def _ddp_blocks(result):
    d = result.get("ddp")
    if not d:
        return []
    return [
        Heading(2, "Distributed training (PyTorch DDP)"),
        Text(
            f"{d['world']} processes on this machine (`torch.multiprocessing.spawn`, backend "
            f"{d['backend']}, one thread each), the recipe of `host/nn/train.py` (seeded "
            "Adam, lr 1e-3, global batch 64 split between the ranks). "
            f"{d['epochs']} epoch(s) of {d['images_per_epoch']:,} images "
            f"({d['epoch_fraction']:.0%} of the training set), {d['images_trained']:,} "
            f"images trained in all; seconds per epoch (between barriers): "
            + ", ".join(f"{s:.2f}" for s in d["epoch_seconds"])
            + f"; with start-up {d['wall_seconds']:.1f} s. Test accuracy "
            f"{d['test_accuracy']:.3f}. The ranks' weights are equal: "
            f"{d['weights_equal_across_ranks']}; the largest difference from the same "
            f"training in one process: {d['max_abs_diff_vs_one_process']:.1e}."
        ),
    ]


_PLOT_TITLES = {
    "latency": "latency vs batch",
    "throughput": "throughput per platform",
    "utilization": "utilization vs batch",
    "resources": "resources vs throughput",
    "confusion": "confusion matrix",
}


def report_blocks(result: dict) -> list:
    """The report of one :func:`systolic.host.bench.bench` result, as blocks."""
    table = comparison_table(result)
    n = result["sweep"][0]["images"]
    intro = (
        f"Model: {result['model']} ({result['network']}). Data: {result['data']}; {n} test "
        f"images in the sweep. PyTorch {result['torch_version']}; {result['cores']} CPU cores."
    )
    blocks = [
        Heading(1, "Benchmark report"),
        Text(intro),
        Heading(2, "CPU, GPU, core and distributed"),
        Text(
            "Measured: PyTorch timings (medians of `torch.utils.benchmark` blocks), RTL "
            "simulation, DDP training, Dask runs. Modelled: the core's figures, exact cycle "
            "counts of the model backend times the clock (marked so); the RTL samples "
            "confirm the cycle counts they cover. Throughput is images over seconds of the "
            "same run."
        ),
    ]
    g = result.get("gpu") or {}
    if "skipped" in g:
        blocks.append(Text(g["skipped"] + "."))
    blocks.append(table)
    blocks += [Heading(2, "Core (model backend, exact cycles; figures modelled)")]
    blocks += [_sweep_table(result), Text(f"Clock: {result['sweep'][0]['clock_source']}.")]
    blocks += _breakdown_blocks(result.get("breakdown", []))
    if result["torch"]:
        blocks += _torch_blocks(result)
    blocks += _ddp_blocks(result)
    blocks += _rtl_blocks(result)
    blocks += _sharded_blocks(result)
    plots = result.get("plots", {})
    if plots.get("skipped"):
        blocks += [Text(line) for line in plots["skipped"]]
    blocks += [
        Image(_PLOT_TITLES.get(k, k), os.path.basename(p))
        for k, p in plots.items()
        if k != "skipped"
    ]
    return blocks
