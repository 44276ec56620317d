"""``--scheduler tcp://HOST:PORT``: the shards run on a real, separately started Dask
cluster (a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1), and the
outputs are byte for byte those of one local run."""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from systolic.host.backends import get_backend
from systolic.host.cli.infer import main as infer
from systolic.host.compile import compile_model
from systolic.host.nn.qmodel import random_quantized_model
from systolic.host.parallel import check_scheduler, connect
from systolic.host.run import run_images
from systolic.hw.config import CoreConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASK = os.path.join(os.path.dirname(sys.executable), "dask")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler on a free port (its address read from its scheduler file) and two
    single-threaded workers that import this checkout; stopped afterwards."""
    tmp = tmp_path_factory.mktemp("dask")
    common = dict(cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    procs = []
    try:
        sched_file = tmp / "scheduler.json"
        procs.append(
            subprocess.Popen(
                [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
                + ["--scheduler-file", str(sched_file)],
                **common,
            )
        )
        deadline = time.monotonic() + 30
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert procs[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start in 30 s"
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [DASK, "worker", address, "--nthreads", "1", "--no-nanny"]
                    + ["--no-dashboard", "--name", f"w{i}", "--local-directory", str(tmp)],
                    **common,
                )
            )
        with connect(address) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_address_format():
    assert check_scheduler("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert check_scheduler("tcp://node-3.cluster:1") == "tcp://node-3.cluster:1"
    for bad in ("127.0.0.1:8786", "tcp://host", "tcp://host:0", "tcp://host:65536", "ws://h:1"):
        with pytest.raises(ValueError, match="--scheduler must look like tcp://HOST:PORT"):
            check_scheduler(bad)


def test_no_scheduler_there():
    with pytest.raises(OSError, match=r"--scheduler tcp://127.0.0.1:9: no Dask scheduler"):
        with connect("tcp://127.0.0.1:9", timeout=2):
            pass


def test_shards_on_a_cluster_equal_one_local_run(cluster):
    cfg = CoreConfig(rows=4, cols=4)
    prog = compile_model(random_quantized_model((40, 24, 10), seed=3), cfg, 8)
    x = np.random.default_rng(5).integers(-128, 128, (56, 40), dtype=np.int8)
    backend = get_backend("model", cfg)
    one = run_images(backend, prog, x, progress=False)
    local = run_images(backend, prog, x, shard=16, progress=False)
    remote = run_images(backend, prog, x, shard=16, scheduler=cluster, progress=False)
    assert remote["shards"] == local["shards"] == 4
    assert remote["outputs"].tobytes() == local["outputs"].tobytes() == one["outputs"].tobytes()
    assert remote["status"] == local["status"] and remote["cycles"] == local["cycles"]


def test_infer_with_scheduler_reports_as_a_local_run(cluster, tmp_path, capsys):
    args = ["--backend", "model", "--size", "4x4", "--limit", "128", "--batch", "32"]
    assert infer([*args, "--json", str(tmp_path / "local.json")]) == 0
    assert (
        infer([*args, "--shard", "32", "--scheduler", cluster, "--json", str(tmp_path / "d.json")])
        == 0
    )
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: model 4x4, 128 images")
    local, dist = (json.loads((tmp_path / n).read_text()) for n in ("local.json", "d.json"))
    assert dist["shards"] == 4 and local["shards"] == 1
    for key in ("accuracy", "golden_accuracy", "argmax_agreement", "mismatches", "error"):
        assert dist[key] == local[key], key
    assert dist["mismatches"] == 0


@pytest.mark.rtl
def test_rtl_shards_on_a_cluster_equal_one_local_run(cluster):
    """The rtl backend, built here, pickled to the workers with its simulator (they run
    it from the same build/ folder)."""
    from .conftest import SIM_CONFIGS

    cfg = SIM_CONFIGS["4x4"]  # the configuration test_parallel builds too
    prog = compile_model(random_quantized_model((60, 21, 10), seed=4), cfg, 8)
    x = np.random.default_rng(4).integers(-128, 128, (40, 60), dtype=np.int8)
    rtl = get_backend("rtl", cfg)
    rtl.prepare()
    local = run_images(rtl, prog, x, shard=16, progress=False)
    remote = run_images(rtl, prog, x, shard=16, scheduler=cluster, progress=False)
    assert remote["shards"] == 3
    assert remote["outputs"].tobytes() == local["outputs"].tobytes()
    assert remote["cycles"] == local["cycles"] == local["predicted_cycles"]
