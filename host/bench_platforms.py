"""PyTorch on the platforms the core is compared with: this machine's CPU, a CUDA GPU
when there is one, and data-parallel training (DDP over gloo, processes on this machine).

Every measurement runs in a child process of its own (``spawn``), so that its peak
memory is its own and a crash or a CUDA context stays there. Timings use
``torch.utils.benchmark`` (warm-up, then blocks of runs: the median and the
interquartile range); the machine's load is recorded around each.

Peak memory on the CPU is the child's peak resident set (``VmHWM``), reset with
``/proc/self/clear_refs`` before each phase. ``resource.getrusage``'s ``ru_maxrss``
is not used: in a spawned child it starts at the parent's resident set at the fork
(the pre-exec image), so it reports the parent's memory, not the child's.
"""

import multiprocessing
import os
import queue
import socket
import time

import numpy as np
import torch
import torch.utils.benchmark as benchmark

from .nn.checkpoint import to_input
from .nn.data import load_mnist
from .nn.train import accuracy, new_model, train, train_epoch

__all__ = [
    "THREADS",
    "gpu_skip_line",
    "inference_figures",
    "load_average",
    "measure_cpu",
    "measure_ddp",
    "measure_gpu",
    "peak_rss_mb",
    "reset_peak_rss",
    "timed",
]

#: CPU threads of every PyTorch process here, for inference and training alike. One: on
#: a shared machine a second thread's waits dominate (the int8 QDQ graph at batch 1
#: took 65 ms with 2 threads under load against 0.8 ms with one), and DDP's processes
#: use one thread each, so that its speed-up over the CPU row is the data-parallel one.
THREADS = 1


def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set to its current one (Linux); False if not."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's peak resident set in MiB (``VmHWM``), or None without ``/proc``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def timed(stmt: str, env: dict, min_run_time: float) -> dict:
    """``stmt`` timed by ``torch.utils.benchmark`` after a warm-up of three runs.

    Returns ``median`` and ``iqr`` (seconds per run of ``stmt``) and ``blocks`` (the
    number of timed blocks). ``stmt`` must synchronize itself when it runs on a GPU.
    """
    for _ in range(3):
        exec(stmt, dict(env))  # warm-up: lazy initialization, allocator, caches
    m = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    m = m.blocked_autorange(min_run_time=min_run_time)
    return {"median": m.median, "iqr": m.iqr, "blocks": len(m.times)}


def inference_figures(model, images: np.ndarray, batches, min_run_time: float, device="cpu"):
    """Seconds per call of ``model`` on a batch of each size (images repeated from
    ``images`` as needed), under ``torch.no_grad``; one entry a batch with
    ``images_per_second`` = batch / median."""
    sync = "; torch.cuda.synchronize()" if torch.device(device).type == "cuda" else ""
    out = []
    with torch.no_grad():
        for b in batches:
            x = to_input(np.resize(images, (b, images.shape[1]))).to(device)
            t = timed("model(x)" + sync, {"model": model, "x": x, "torch": torch}, min_run_time)
            out.append({"batch": b, **t, "images_per_second": b / t["median"]})
    return out


def _cpu_child(queue, model_path, images, batches, min_run_time, train_kwargs):
    from .nn.quantize import load_for_inference  # here: DDP's workers need not load it

    torch.set_num_threads(THREADS)
    data = load_mnist()
    _, tq, float_model = load_for_inference(model_path, data)
    out = {"load_before": load_average(), "threads": THREADS}
    # int8: PyTorch's execution of the PT2E-converted graph (QDQ, float32 arithmetic).
    for name, model in (("float", float_model), ("int8", tq.module)):
        reset_peak_rss()
        start = peak_rss_mb()
        fig = inference_figures(model, images, batches, min_run_time)
        by = {e["batch"]: e for e in fig}
        out[name] = {
            "batches": fig,
            "latency_us_batch1": by[1]["median"] * 1e6,
            "images_per_second_batch1": by[1]["images_per_second"],
            "images_per_second_batch256": by[256]["images_per_second"],
            "peak_rss_delta_mb": _delta(start),
        }
    reset_peak_rss()
    start = peak_rss_mb()
    _, meta = train(data, progress=False, **train_kwargs)
    out["train_seconds"] = meta["train_seconds"]
    out["train_epochs"] = meta["epochs"]
    out["train_images_per_epoch"] = meta["train_images"]
    out["train_test_accuracy"] = meta["test_accuracy"]
    out["train_peak_rss_delta_mb"] = _delta(start)
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_after"] = load_average()
    queue.put(out)


def _delta(start):
    end = peak_rss_mb()
    return None if start is None or end is None else end - start


def _in_child(target, *args):
    """``target(queue, *args)`` in a spawned process; what it puts on the queue. A child
    that dies first (a crash, a CUDA error) raises instead of leaving us waiting."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(q, *args))
    p.start()
    try:
        while True:
            try:
                return q.get(timeout=2)
            except queue.Empty:
                if not p.is_alive():
                    raise RuntimeError(
                        f"{target.__name__.strip('_')} failed: its process exited with "
                        f"{p.exitcode} before giving a result"
                    ) from None
    finally:
        p.join()


def measure_cpu(model_path: str, images: np.ndarray, batches, min_run_time: float, train_kwargs):
    """PyTorch on the CPU (:data:`THREADS` threads) in a child process: the float model
    and the converted int8 graph of ``model_path`` at each batch, and training
    (:func:`systolic.host.nn.train.train` with ``train_kwargs``). ``batches`` must hold 1 and 256.
    """
    if not {1, 256} <= set(batches):
        raise ValueError(f"batches must include 1 and 256, not {sorted(batches)}")
    return _in_child(_cpu_child, model_path, images, list(batches), min_run_time, train_kwargs)


def gpu_skip_line() -> str | None:
    """The line that says why there is no GPU row, or None when CUDA has a device."""
    if torch.cuda.is_available():
        return None
    return (
        f"GPU: skipped, no CUDA device (torch {torch.__version__}, "
        f"cuda {torch.version.cuda or 'none'})"
    )


def _graph_batch1(model, x, min_run_time):
    """Batch 1 as one CUDA graph: captured after a warm-up on a side stream (capture
    needs the lazy initializations done and a non-default stream), then replayed."""
    static_x = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = model(static_x)
    graph.replay()
    torch.cuda.synchronize()
    same = bool(torch.allclose(static_y, model(static_x)))
    replay = "graph.replay(); torch.cuda.synchronize()"
    t = timed(replay, {"graph": graph, "torch": torch}, min_run_time)
    return {**t, "images_per_second": 1 / t["median"], "equals_eager": same}


def _gpu_child(queue, model_path, images, batches, min_run_time, train_kwargs):
    from .nn.quantize import load_for_inference

    dev = torch.device("cuda")
    data = load_mnist()
    _, _, float_model = load_for_inference(model_path, data)
    model = float_model.to(dev).eval()
    out = {"device": torch.cuda.get_device_name(dev), "cuda": torch.version.cuda}
    out["load_before"] = load_average()
    torch.cuda.reset_peak_memory_stats(dev)
    out["eager"] = inference_figures(model, images, batches, min_run_time, dev)
    with torch.no_grad():
        x1 = to_input(images[:1]).to(dev)
        out["graph_batch1"] = _graph_batch1(model, x1, min_run_time)
    out["inference_peak_bytes"] = torch.cuda.max_memory_allocated(dev)
    # training: the recipe of systolic.host.nn.train (seeded Adam, shuffled batches), on the GPU
    torch.cuda.reset_peak_memory_stats(dev)
    torch.manual_seed(train_kwargs.get("seed", 0))
    arch = {k: train_kwargs[k] for k in ("model", "hidden", "channels") if k in train_kwargs}
    net = new_model(**arch).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = to_input(data.train_images).to(dev)
    y = torch.from_numpy(data.train_labels).to(dev)
    gen = torch.Generator().manual_seed(0)
    epochs = train_kwargs.get("epochs", 1)
    net.train()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(dev)
        train_epoch(net, opt, x, y, order, 64)
    torch.cuda.synchronize()
    out["train_seconds"] = time.perf_counter() - t
    out["train_epochs"] = epochs
    out["train_images_per_epoch"] = len(x)
    out["train_peak_bytes"] = torch.cuda.max_memory_allocated(dev)
    out["train_test_accuracy"] = accuracy(net.cpu(), data.test_images, data.test_labels)
    out["load_after"] = load_average()
    queue.put(out)


def measure_gpu(model_path: str, images: np.ndarray, batches, min_run_time: float, train_kwargs):
    """PyTorch float on a CUDA GPU in a child process: eager at each batch, batch 1 as a
    CUDA graph, and training; ``{"skipped": line}`` when CUDA has no device."""
    line = gpu_skip_line()
    if line is not None:
        return {"skipped": line}
    return _in_child(_gpu_child, model_path, images, list(batches), min_run_time, train_kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, result_path, arch, images, epochs, seed, batch_size):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(THREADS)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = load_mnist()
        torch.manual_seed(seed)  # every rank starts from the same weights
        model = new_model(**arch)
        ddp = DistributedDataParallel(model)
        opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
        x, y = to_input(data.train_images), torch.from_numpy(data.train_labels)
        gen = torch.Generator().manual_seed(seed)  # the same order on every rank
        reset_peak_rss()
        rss_start = peak_rss_mb()
        seconds, seen = [], 0
        ddp.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)[:images]
            dist.barrier()
            t = time.perf_counter()
            train_epoch(ddp, opt, x, y, order, batch_size, rank, world)
            dist.barrier()
            seconds.append(time.perf_counter() - t)
            seen += sum(
                len(order[i : i + batch_size].tensor_split(world)[rank])
                for i in range(0, len(order), batch_size)
            )
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        every = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(every, flat)
        counts = [torch.zeros((), dtype=torch.long) for _ in range(world)]
        dist.all_gather(counts, torch.tensor(seen))
        peaks = [None] * world
        dist.all_gather_object(peaks, _delta(rss_start))
        if rank == 0:
            torch.save(
                {
                    "epoch_seconds": seconds,
                    "images_trained": int(sum(counts)),
                    "weights_equal_across_ranks": all(torch.equal(every[0], w) for w in every),
                    "weights": flat.numpy(),
                    "test_accuracy": accuracy(model, data.test_images, data.test_labels),
                    "peak_rss_delta_mb_per_rank": peaks,
                },
                result_path,
            )
    finally:
        dist.destroy_process_group()


def _single_process(arch, images, epochs, seed, batch_size):
    """The same training in this process (world 1): what DDP's weights must equal."""
    data = load_mnist()
    torch.manual_seed(seed)
    model = new_model(**arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = to_input(data.train_images), torch.from_numpy(data.train_labels)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        train_epoch(model, opt, x, y, torch.randperm(len(x), generator=gen)[:images], batch_size)
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


def measure_ddp(
    arch: dict, images: int | None, epochs: int, world: int = 2, seed: int = 0, batch_size: int = 64
) -> dict:
    """Data-parallel training: ``world`` processes (``torch.multiprocessing.spawn``),
    DistributedDataParallel over gloo, the recipe of :func:`systolic.host.nn.train.train`
    (seeded Adam, lr 1e-3, global batch ``batch_size`` split between the ranks).

    ``images``: the first ``images`` of each epoch's shuffled order (a fraction of an
    epoch, for a quick run), or None for whole epochs. Returns the seconds of each
    epoch (between barriers, after start-up), ``images_trained`` (summed over ranks,
    every epoch), whether the ranks' weights are equal, the largest difference from the
    same training in one process, the test accuracy and each rank's peak RSS.
    """
    import tempfile

    import torch.multiprocessing as tmp

    data_len = len(load_mnist().train_images)
    images = data_len if images is None else min(images, data_len)
    t = time.perf_counter()
    load = load_average()
    # rank 0's result goes through a file: a queue's pipe would block rank 0 on a result
    # larger than the pipe's buffer while this process waits in join
    with tempfile.TemporaryDirectory(prefix="ddp-") as tmpdir:
        path = os.path.join(tmpdir, "rank0.pt")
        tmp.spawn(
            _ddp_worker,
            args=(world, _free_port(), path, arch, images, epochs, seed, batch_size),
            nprocs=world,
            join=True,
        )
        out = torch.load(path, weights_only=False)
    out["wall_seconds"] = time.perf_counter() - t
    out["load_before"], out["load_after"] = load, load_average()
    ref = _single_process(arch, images, epochs, seed, batch_size)
    out["max_abs_diff_vs_one_process"] = float(np.max(np.abs(out.pop("weights") - ref)))
    out.update(world=world, threads=THREADS, backend="gloo", epochs=epochs, images_per_epoch=images)
    out["epoch_fraction"] = images / data_len
    return out
