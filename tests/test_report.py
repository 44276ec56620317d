"""The bench report: tables rendered to Markdown and HTML from the same blocks, the
comparison table's rows and blanks, the GPU skip line, the plots (no simulator)."""

import json
import re
import sys

import pytest
import torch

from systolic.host import bench_platforms
from systolic.host.report import Heading, Image, Table, Text, md_table, times, to_html, to_markdown
from systolic.host.report_bench import comparison_table, is_loaded, report_blocks, synth_entries
from systolic.host.report_plots import plots


def test_times_never_below_one():
    assert times(3.8, 1) == "3.80x faster"
    assert times(1, 3.8) == "3.80x slower"
    assert times(2, 2) == "1.00x faster"


def test_table_rows_and_footnotes():
    t = Table(["a", "b"])
    t.add("x|y", t.na("no GPU"))
    t.add(t.na("no GPU"), t.na("inference only"))
    assert t.notes == ["no GPU", "inference only"]  # each reason once
    assert md_table(t) == [
        "| a | b |",
        "|---|---|",
        "| x\\|y | n/a [1] |",
        "| n/a [1] | n/a [2] |",
        "",
        "[1] no GPU  ",
        "[2] inference only  ",
    ]
    with pytest.raises(ValueError, match="a row of 2 cells expected, not 1"):
        t.add("only one")


def test_markdown_and_html_from_the_same_blocks():
    t = Table(["name", "value"])
    t.add("<script>", "**1.5x slower**")
    blocks = [Heading(1, "Report"), Text("see `bench.json`"), t, Image("plot", "p.png")]
    md = to_markdown(blocks, prefix="mlp/")
    assert "# Report" in md and "![plot](mlp/p.png)" in md
    assert "| <script> | **1.5x slower** |" in md
    page = to_html(blocks, "Report & more", prefix="mlp/")
    assert "<title>Report &amp; more</title>" in page
    assert "&lt;script&gt;" in page and "<script>" not in page  # escaped
    assert "<strong>1.5x slower</strong>" in page and "<code>bench.json</code>" in page
    assert '<img src="mlp/p.png" alt="plot">' in page
    with pytest.raises(TypeError, match="a report block must be"):
        to_markdown(["text"])


def test_gpu_skip_line_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = bench_platforms.gpu_skip_line()
    cuda = torch.version.cuda or "none"
    assert line == f"GPU: skipped, no CUDA device (torch {torch.__version__}, cuda {cuda})"
    assert bench_platforms.measure_gpu("unused.pt", None, (1, 256), 0.1, {}) == {"skipped": line}


def test_timed_measures_something():
    t = bench_platforms.timed("sum(range(1000))", {}, 0.05)
    assert t["median"] > 0 and t["iqr"] >= 0 and t["blocks"] >= 1


def test_measure_cpu_needs_batches_1_and_256():
    with pytest.raises(ValueError, match=r"batches must include 1 and 256, not \[1, 8\]"):
        bench_platforms.measure_cpu("unused.pt", None, (1, 8), 0.1, {})


def _cpu(ips1, ips256, load=0.1):
    batches = [
        {"batch": 1, "median": 1 / ips1, "iqr": 1e-6, "blocks": 5, "images_per_second": ips1},
        {
            "batch": 256,
            "median": 256 / ips256,
            "iqr": 1e-5,
            "blocks": 5,
            "images_per_second": ips256,
        },
    ]
    return {
        "batches": batches,
        "latency_us_batch1": 1e6 / ips1,
        "images_per_second_batch1": ips1,
        "images_per_second_batch256": ips256,
        "peak_rss_delta_mb": 12.0,
    }


def _sweep_entry(batch, batch_run, images, cpi, mhz=50.0):
    return {
        "rows": 4,
        "cols": 4,
        "batch": batch,
        "batch_run": batch_run,
        "images": images,
        "cycles_per_image": cpi,
        "clock_mhz": mhz,
        "clock_source": "the default clock",
        "images_per_second_at_clock": mhz * 1e6 / cpi,
        "utilization": 0.5,
        "onchip_bytes": {"total": 1000 * batch_run},
        "predictions": [0, 1, 2, 3],
    }


def _result(load=0.1, gpu=None):
    return {
        "model": "models/mlp.pt",
        "network": "784-128-10",
        "data": "test data",
        "torch_version": "2.x",
        "cores": 2,
        "torch": {
            "threads": 2,
            "load_before": load,
            "load_after": load,
            "float": _cpu(10_000, 200_000),
            "int8": _cpu(2_000, 50_000),
            "train_seconds": 4.0,
            "train_epochs": 2,
            "train_images_per_epoch": 4000,
            "train_peak_rss_delta_mb": 30.0,
        },
        "gpu": gpu or {"skipped": "GPU: skipped, no CUDA device (torch 2.x, cuda none)"},
        "ddp": {
            "epoch_seconds": [0.5],
            "images_per_epoch": 512,
            "epoch_fraction": 0.128,
            "epochs": 1,
            "images_trained": 512,
            "world": 2,
            "backend": "gloo",
            "wall_seconds": 9.0,
            "weights_equal_across_ranks": True,
            "max_abs_diff_vs_one_process": 1e-8,
            "test_accuracy": 0.6,
            "peak_rss_delta_mb_per_rank": [20.0, 22.0],
            "load_before": load,
            "load_after": load,
        },
        "sweep": [
            _sweep_entry(1, 1, 64, 4000.0),
            _sweep_entry(256, 256, 64, 1000.0),  # only 64 images ran
        ],
        "rtl": [
            {
                "rows": 4,
                "cols": 4,
                "images": 16,
                "batch": 16,
                "cycles": 20000,
                "model_cycles": 20000,
                "cycles_equal": True,
                "outputs_equal": True,
                "sim_cycles_per_second": 1e5,
            }
        ],
        "sharded": {
            "rows": 8,
            "cols": 8,
            "images": 64,
            "shard": 32,
            "workers": 2,
            "one_worker_seconds": 10.0,
            "2_workers_seconds": 6.0,
            "speedup": 10 / 6,
            "identical": True,
            "dask_identical": True,
            "dask_scaling": [
                {
                    "workers": 1,
                    "shards": 1,
                    "shard_images": [64],
                    "seconds": 8.0,
                    "images_per_second": 8.0,
                    "identical": True,
                    "speedup": 1.0,
                },
                {
                    "workers": 2,
                    "shards": 2,
                    "shard_images": [32, 32],
                    "seconds": 10.0,
                    "images_per_second": 6.4,
                    "identical": True,
                    "speedup": 0.8,
                },
            ],
            "load_before": load,
            "load_after": load,
        },
        "breakdown": [],
        "synth": [],
        "plots": {},
    }


def test_comparison_rows_and_blanks():
    t = comparison_table(_result())
    platforms = [r[0] for r in t.rows]
    assert platforms == [
        "CPU: PyTorch float (2 threads)",
        "CPU: PyTorch int8 (2 threads)",
        "GPU",
        "core 4x4 at 50 MHz [3] (model backend)",
        "distributed training: PyTorch DDP, gloo, 2 processes x 1 thread",
        "distributed simulation: Dask, RTL of the 8x8 core",
    ]
    rows = {r[0].split(" (")[0]: dict(zip(t.columns, r)) for r in t.rows}
    cpu = rows["CPU: PyTorch float"]
    assert cpu["training time / epoch"] == "2.00 s (4,000 images; mean of 2 epochs)"
    assert cpu["batch-1 latency"].startswith("100.0 us")
    assert cpu["throughput, batch 256"] == "200,000 images/s"
    assert cpu["throughput, best batch"] == "200,000 images/s (batch 256)"
    gpu = rows["GPU"]
    assert all(gpu[c] == "n/a [2]" for c in t.columns[1:6])
    assert t.notes[1].startswith("GPU: skipped, no CUDA device")
    core = next(r for r in t.rows if r[0].startswith("core"))
    assert core[1].startswith("n/a") and "inference only" in t.notes[int(core[1][5]) - 1]
    assert core[2] == "80.0 us (modelled)"
    # batch 256 with only 64 images run is labelled with the batch that ran
    assert core[3] == "50,000 images/s (modelled) at batch 64 (only 64 images were run)"
    assert core[4] == "50,000 images/s (modelled, batch 64)"
    assert "RTL-confirmed: 16 images" in core[6]
    ddp = rows["distributed training: PyTorch DDP, gloo, 2 processes x 1 thread"]
    assert ddp["training time / epoch"] == "0.50 s for 512 images (13% of an epoch)"
    assert ddp["notes"].endswith("vs one process: 1.95x slower (images/s)")  # 1024 vs 2000
    dask = t.rows[-1]
    assert "vs 1 worker: 2 workers: 1.25x slower" in dask[6]  # never "0.80x faster"
    assert not any(re.search(r"\b0\.\d+x", c) for r in t.rows for c in r)


def test_loaded_figures_are_flagged():
    assert not is_loaded({"load_before": 1.0, "load_after": 0.5}, 2)
    assert is_loaded({"load_before": 0.2, "load_after": 1.5}, 2)
    t = comparison_table(_result(load=7.0))
    flagged = [r[0] for r in t.rows if "(load 7.0) [1]" in r[0]]
    assert len(flagged) == 4  # the two CPU rows, DDP and Dask: the core is modelled
    assert "unreliable" in t.notes[0]


def test_gpu_rows_when_present():
    eager = [
        {
            "batch": b,
            "median": 1e-4 * b**0.5,
            "iqr": 1e-6,
            "blocks": 9,
            "images_per_second": b / (1e-4 * b**0.5),
        }
        for b in (1, 8, 64, 256)
    ]
    gpu = {
        "device": "Test GPU",
        "cuda": "12.x",
        "eager": eager,
        "graph_batch1": {
            "median": 2e-5,
            "iqr": 1e-7,
            "blocks": 9,
            "images_per_second": 5e4,
            "equals_eager": True,
        },
        "inference_peak_bytes": 3 << 20,
        "train_seconds": 3.0,
        "train_epochs": 2,
        "train_images_per_epoch": 4000,
        "train_peak_bytes": 5 << 20,
        "train_test_accuracy": 0.9,
    }
    t = comparison_table(_result(gpu=gpu))
    rows = [r for r in t.rows if r[0].startswith("GPU")]
    assert [r[0] for r in rows] == [
        "GPU Test GPU: PyTorch float, eager",
        "GPU Test GPU: PyTorch float, CUDA graph",
    ]
    assert rows[0][3] == "160,000 images/s" and rows[0][4] == "160,000 images/s (batch 256)"
    assert rows[1][2].startswith("20.0 us") and rows[1][3].startswith("n/a")


def test_report_blocks_and_plots(tmp_path):
    result = _result()
    report = tmp_path / "synth.json"
    report.write_text(
        json.dumps(
            [
                {
                    "family": "ecp5",
                    "device": "LFE5U-85F",
                    "rows": 4,
                    "cols": 4,
                    "luts": 9000,
                    "ffs": 8000,
                    "dsps": 20,
                    "brams": 40,
                    "fmax_mhz": 50.0,
                    "fits": True,
                },
                {"family": "ice40", "rows": 4, "cols": 4, "fmax_mhz": 20.0, "fits": True},
            ]
        )
    )
    result["synth"] = synth_entries(str(report))
    assert [(s["rows"], s["luts"]) for s in result["synth"]] == [(4, 9000)]
    assert synth_entries(str(tmp_path / "none.json")) == []
    files = plots(result, str(tmp_path), [0, 1, 2, 3])
    for name in ("latency", "throughput", "utilization", "resources", "confusion"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
    result["synth"] = []
    assert (
        "Resources vs throughput: skipped"
        in plots(result, str(tmp_path), [0, 1, 2, 3])["skipped"][0]
    )
    result["plots"] = files
    md = to_markdown(report_blocks(result))
    assert md.startswith("# Benchmark report")
    assert "GPU: skipped, no CUDA device (torch 2.x, cuda none)." in md
    assert "![latency vs batch](latency.png)" in md


def test_a_child_that_dies_is_an_error():
    # sys.exit as the child: nothing of ours to import there, so it dies quickly
    with pytest.raises(RuntimeError, match="exit failed: its process exited with 1 before"):
        bench_platforms._in_child(sys.exit)


def test_combined_report_for_several_networks(tmp_path):
    from systolic.host.bench import write_combined_report

    a, b = _result(), _result()
    b["network"] = "CNN 1x28x28 conv8-pool-conv16-pool-10"
    a["plots"] = b["plots"] = {"latency": "x/latency.png"}
    write_combined_report([a, b], ["mlp", "cnn"], str(tmp_path))
    md = (tmp_path / "REPORT.md").read_text()
    assert md.startswith("# Benchmark report\n")
    assert "## 784-128-10" in md and "## CNN 1x28x28" in md and "### CPU, GPU, core" in md
    assert "![latency vs batch](cnn/latency.png)" in md
    assert '<img src="mlp/latency.png"' in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": "huge"}, "size must be one of quick, full, not 'huge'"),
        ({"ddp_epochs": 0}, "ddp_epochs must be a positive integer, not 0"),
        ({"ddp_images": 2.5}, "ddp_images must be a positive integer, not 2.5"),
    ],
)
def test_bench_refuses_bad_arguments_before_work(kwargs, message):
    from systolic.host.bench import bench

    with pytest.raises(ValueError, match=re.escape(message)):
        bench(**kwargs)
