"""Sharded runs (local processes, Dask) give the same bytes as one run; the quick bench."""

import json

import numpy as np
import pytest
import torch

from systolic.host.backends import get_backend
from systolic.host.bench import bench
from systolic.host.compile import compile_model
from systolic.host.nn.qmodel import random_quantized_model
from systolic.host.parallel import local_client, run_shards_dask
from systolic.host.run import run_images
from systolic.hw.config import CoreConfig

from .conftest import SIM_CONFIGS


def _setup(cfg):
    q = random_quantized_model((60, 21, 10), seed=4)
    x = np.random.default_rng(4).integers(-128, 128, (40, 60)).astype(np.int8)
    return compile_model(q, cfg, 8), x


@pytest.mark.rtl
def test_local_workers_identical():
    cfg = SIM_CONFIGS["4x4"]
    prog, x = _setup(cfg)
    rtl = get_backend("rtl", cfg)
    one = run_images(rtl, prog, x, shard=16, workers=1, progress=False)
    two = run_images(rtl, prog, x, shard=16, workers=2, progress=False)
    assert one["shards"] == 3
    np.testing.assert_array_equal(one["outputs"], two["outputs"], strict=True)
    assert one["cycles"] == two["cycles"] == one["predicted_cycles"]
    whole = get_backend("model", cfg).run(prog, x)
    np.testing.assert_array_equal(one["outputs"], whole.outputs, strict=True)


def test_dask_local_cluster_identical():
    cfg = CoreConfig(rows=4, cols=4)
    prog, x = _setup(cfg)
    pieces = [x[:16], x[16:32], x[32:]]
    model = get_backend("model", cfg)
    with local_client(2) as client:
        results = run_shards_dask(model, prog, pieces, client)
    np.testing.assert_array_equal(
        np.concatenate([r.outputs for r in results]), model.run(prog, x).outputs, strict=True
    )


@pytest.mark.rtl
def test_quick_bench(tmp_path):
    res = bench("quick", workers=2, out_dir=str(tmp_path), arrays=[(4, 4)], batches=[1, 8])
    assert all(e["mismatches"] == 0 for e in res["sweep"])
    assert all(s["outputs_equal"] and s["cycles_equal"] for s in res["rtl"])
    assert res["sharded"]["identical"] and res["sharded"]["dask_identical"]
    names = ("bench.json", "REPORT.md", "report.html")
    names += ("latency.png", "throughput.png", "utilization.png", "confusion.png")
    for name in names:
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "bench.json").read_text())
    cpu = saved["torch"]
    assert cpu["float"]["images_per_second_batch256"] > 0
    # throughput is images over the seconds of the same timing
    for kind in ("float", "int8"):
        for e in cpu[kind]["batches"]:
            assert e["images_per_second"] == pytest.approx(e["batch"] / e["median"])
    # DDP: the ranks hold the same weights, equal to one process's training on the same
    # images, better than chance after the slice it trained on
    ddp = saved["ddp"]
    assert ddp["weights_equal_across_ranks"]
    assert ddp["max_abs_diff_vs_one_process"] < 1e-4
    assert ddp["images_trained"] == ddp["images_per_epoch"] * ddp["epochs"] == 512
    assert ddp["test_accuracy"] > 0.3
    # Dask: 1 and 2 workers, one equal shard each, the speed-ups from the same times
    scaling = saved["sharded"]["dask_scaling"]
    assert [(e["workers"], e["shard_images"]) for e in scaling] == [(1, [64]), (2, [32, 32])]
    assert scaling[1]["speedup"] == pytest.approx(scaling[0]["seconds"] / scaling[1]["seconds"])
    # the comparison table: one row a platform, the GPU's saying why it is blank
    rows = {r[0].split(" (")[0]: r for r in saved["comparison"]["rows"]}
    assert {"CPU: PyTorch float", "CPU: PyTorch int8"} <= rows.keys()
    assert any(k.startswith("core 4x4 at ") for k in rows)
    assert any(k.startswith("distributed training: PyTorch DDP, gloo, 2") for k in rows)
    assert any(k.startswith("distributed simulation: Dask") for k in rows)
    report = (tmp_path / "REPORT.md").read_text()
    if not torch.cuda.is_available():
        assert "GPU: skipped, no CUDA device (torch " in report
        assert rows["GPU"][1].startswith("n/a [")
    assert "512 images (13% of an epoch)" in report
    page = (tmp_path / "report.html").read_text()
    assert '<img src="latency.png"' in page and "<table>" in page
