"""The bench's plots (matplotlib, Agg): latency vs batch per platform, throughput per
platform, utilization vs batch per array size, resources vs throughput per array size
and the confusion matrix of the core's predictions.

Modelled figures (the core: exact cycles x clock) are drawn dashed or hatched,
measured ones solid.
"""

import os

import numpy as np

__all__ = ["plots"]

_DPI = 110


def _save(fig, out_dir, name):
    import matplotlib.pyplot as plt

    path = os.path.join(out_dir, f"{name}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def _plain():
    """Tick labels as plain numbers (0.1, 10, 1000) rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.10g}")


def _arrays(result):
    return sorted({(e["rows"], e["cols"]) for e in result["sweep"]})


def _core_points(result, r, c):
    """(batch the images ran at, seconds per batch, images/s) of one array, modelled."""
    pts = {}
    for e in result["sweep"]:
        if (e["rows"], e["cols"]) != (r, c):
            continue
        b = min(e["batch_run"], e["images"])
        per_image = e["cycles_per_image"] / (e["clock_mhz"] * 1e6)
        pts[b] = (b, per_image * b, e["images_per_second_at_clock"])
    return [pts[b] for b in sorted(pts)]


def _latency(result, out_dir):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    t, g = result["torch"], result.get("gpu") or {}
    for kind, colour in (("float", "tab:orange"), ("int8", "tab:red")):
        if t and t[kind].get("batches"):
            bs = t[kind]["batches"]
            ax.plot(
                [e["batch"] for e in bs],
                [e["median"] * 1e3 for e in bs],
                "o-",
                color=colour,
                label=f"CPU PyTorch {kind} (measured)",
            )
    if g.get("eager"):
        ax.plot(
            [e["batch"] for e in g["eager"]],
            [e["median"] * 1e3 for e in g["eager"]],
            "s-",
            color="tab:green",
            label="GPU PyTorch float, eager (measured)",
        )
        ax.plot(
            [1],
            [g["graph_batch1"]["median"] * 1e3],
            "*",
            ms=12,
            color="tab:green",
            label="GPU CUDA graph, batch 1 (measured)",
        )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (r, c) in enumerate(_arrays(result)):
        pts = _core_points(result, r, c)
        colour = colours[(i + 4) % len(colours)]
        ax.plot(
            [p[0] for p in pts],
            [p[1] * 1e3 for p in pts],
            "--",
            marker="o",
            mfc="none",
            color=colour,
            label=f"core {r}x{c} (modelled)",
        )
        for s in result["rtl"]:
            if (s["rows"], s["cols"]) == (r, c):
                e = next(e for e in result["sweep"] if (e["rows"], e["cols"]) == (r, c))
                b = s.get("batch", min(s["images"], 64))
                ax.plot(
                    [b],
                    [s["cycles"] / s["images"] * b / e["clock_mhz"] / 1e3],
                    "D",
                    color=colour,
                    label=f"core {r}x{c}, RTL-simulated cycles",
                )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch (images per call)",
        ylabel="latency of one batch (ms)",
        title=f"Latency vs batch, MNIST {result['network']}",
    )
    batches = sorted({p for line in ax.get_lines() for p in line.get_xdata()})
    ax.set_xticks(batches, [f"{b:g}" for b in batches])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(_plain())
    ax.grid(True, which="major", ls=":", lw=0.5)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "latency")


def _throughput(result, out_dir):
    import matplotlib.pyplot as plt

    bars = []  # (label, images/s, modelled)
    t, g = result["torch"], result.get("gpu") or {}
    for kind in ("float", "int8"):
        if t and t[kind].get("batches"):
            best = max(t[kind]["batches"], key=lambda e: e["images_per_second"])
            bars.append((f"CPU {kind}\nb{best['batch']}", best["images_per_second"], False))
    if g.get("eager"):
        best = max(g["eager"], key=lambda e: e["images_per_second"])
        bars.append((f"GPU eager\nb{best['batch']}", best["images_per_second"], False))
        bars.append(("GPU graph\nb1", g["graph_batch1"]["images_per_second"], False))
    for r, c in _arrays(result):
        b, _, ips = max(_core_points(result, r, c), key=lambda p: p[2])
        bars.append((f"core {r}x{c}\nb{b}", ips, True))
    sh = result.get("sharded") or {}
    if sh.get("dask_scaling"):
        e = max(sh["dask_scaling"], key=lambda e: e["images_per_second"])
        w = f"{e['workers']} worker" + ("s" if e["workers"] > 1 else "")
        bars.append((f"Dask RTL sim\n{w}", e["images_per_second"], False))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(bars)), 4.5))
    for i, (_, v, modelled) in enumerate(bars):
        ax.bar(
            i,
            v,
            color="tab:blue" if modelled else "tab:orange",
            hatch="//" if modelled else None,
            edgecolor="black",
            label="modelled (core at its clock)" if modelled else "measured",
        )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.set(
        yscale="log",
        ylabel="images / second (best batch)",
        title=f"Throughput per platform, MNIST {result['network']}",
    )
    ax.yaxis.set_major_formatter(_plain())
    return _save(fig, out_dir, "throughput")


def _utilization(result, out_dir):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r, c in _arrays(result):
        pts = {  # at the batch that ran: never more images than were run
            min(e["batch_run"], e["images"]): e["utilization"]
            for e in result["sweep"]
            if (e["rows"], e["cols"]) == (r, c)
        }
        ax.plot(
            sorted(pts),
            [pts[b] for b in sorted(pts)],
            "--",
            marker="o",
            label=f"{r}x{c} (modelled)",
        )
    ax.set(
        xscale="log",
        xlabel="batch (images per program batch)",
        ylabel="utilization (useful MACs / array capacity)",
        ylim=(0, 1.05),
        title=f"Array utilization, MNIST {result['network']}",
    )
    batches = sorted({min(e["batch_run"], e["images"]) for e in result["sweep"]})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.axhline(0.9, color="grey", ls=":", lw=1)
    ax.legend()
    return _save(fig, out_dir, "utilization")


def _resources(result, out_dir):
    """LUTs, DSPs and BRAMs against the modelled best throughput, one point an array
    size that was both synthesized and swept; None when there is none."""
    import matplotlib.pyplot as plt

    pts = []
    for s in result.get("synth", []):
        if (s["rows"], s["cols"]) in _arrays(result):
            _, _, ips = max(_core_points(result, s["rows"], s["cols"]), key=lambda p: p[2])
            pts.append((s, ips))
    if not pts:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), sharex=True)
    for ax, key, unit in zip(axes, ("luts", "dsps", "brams"), ("LUT4s", "DSP blocks", "BRAMs")):
        for s, ips in pts:
            ax.plot(ips, s[key], "o")
            ax.annotate(
                f"{s['rows']}x{s['cols']}",
                (ips, s[key]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set(xscale="log", xlabel="images/s (modelled, best batch)", ylabel=unit)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"Resources ({pts[0][0]['device']}) vs throughput per array size")
    return _save(fig, out_dir, "resources")


def _confusion(result, out_dir, labels):
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    chosen = next(
        (e for e in result["sweep"] if (e["rows"], e["cols"], e["batch"]) == (8, 8, 64)),
        result["sweep"][-1],
    )
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ConfusionMatrixDisplay.from_predictions(
        np.asarray(labels),
        np.asarray(chosen["predictions"]),
        labels=range(10),
        ax=ax,
        cmap="Blues",
        colorbar=True,
    )
    ax.set(
        xlabel="core prediction",
        ylabel="label",
        title=f"Confusion matrix, {chosen['rows']}x{chosen['cols']} core (int8), "
        f"{len(labels)} images",
    )
    return _save(fig, out_dir, "confusion")


def plots(result: dict, out_dir: str, labels) -> dict:
    """Write the PNGs into ``out_dir``; returns ``{name: path}`` and, under
    ``"skipped"``, a line for each plot that could not be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    files = {
        "latency": _latency(result, out_dir),
        "throughput": _throughput(result, out_dir),
        "utilization": _utilization(result, out_dir),
    }
    res = _resources(result, out_dir)
    if res is None:
        files["skipped"] = [
            "Resources vs throughput: skipped, no synthesis result for the swept array "
            "sizes (`make synth` writes build/synth/report.json)."
        ]
    else:
        files["resources"] = res
    files["confusion"] = _confusion(result, out_dir, labels)
    return files
