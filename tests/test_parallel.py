"""Sharded runs (local processes, Dask) give the same bytes as one run; the quick bench."""

import json

import numpy as np
import pytest

from host.backends import get_backend
from host.bench import bench
from host.compile import compile_model
from host.nn.qmodel import random_quantized_model
from host.parallel import local_client, run_shards_dask
from host.run import run_images
from hw.config import CoreConfig

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
    for name in ("bench.json", "REPORT.md", "utilization.png", "throughput.png", "confusion.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["torch"]["float"]["images_per_second_batch256"] > 0
