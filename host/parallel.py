"""Sharded runs: local processes, or a Dask distributed cluster.

Simulating many images is embarrassingly parallel: every shard is a complete program
(the resident preamble, its batches, END) run by its own backend instance (its own
simulator process), and the shards' outputs are concatenated in order, so the result
is byte-identical to a single run of the same shards.

Dask distributed is the engine for more than one machine: it is a pip install, its
``LocalCluster`` runs here for the tests, and the same code takes a
``dask.distributed.Client`` connected to a real cluster (``--scheduler ADDRESS``).
Ray would do as well; Dask needs no daemon and fits the numpy-centred host.
"""

import concurrent.futures
import contextlib
import multiprocessing
import re

from tqdm import tqdm

__all__ = ["run_shards", "run_shards_dask", "local_client", "check_scheduler", "connect"]

#: A Dask scheduler's address as ``--scheduler`` takes it.
_ADDRESS = re.compile(r"tcp://(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")


def _run_one(args):
    backend, program, piece = args
    return backend.run(program, piece)


def run_shards(backend, program, pieces: list, workers: int, progress: bool = True) -> list:
    """Run each shard in its own process, ``workers`` at a time; results in order.

    Workers are forked (no re-import of torch and numpy per worker); each backend
    run starts its own simulator process.
    """
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_run_one, (backend, program, p)) for p in pieces]
        for f in tqdm(
            concurrent.futures.as_completed(futures),
            total=len(futures),
            desc=f"{backend.name} x{workers}",
            unit="shard",
            disable=not progress,
        ):
            f.result()
        return [f.result() for f in futures]


def local_client(workers):
    """A Dask client on a local cluster of ``workers`` single-threaded processes."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        host="127.0.0.1",
    )
    return Client(cluster)


def run_shards_dask(backend, program, pieces: list, client, workers: list | None = None) -> list:
    """Run the shards as Dask tasks on ``client``'s cluster; results in order.

    ``workers``: the addresses of the workers that may run them (default: any), so that
    one cluster can measure the speed-up with 1, 2, ... of its workers.
    """
    futures = client.map(
        _run_one, [(backend, program, p) for p in pieces], pure=False, workers=workers
    )
    return client.gather(futures)


def check_scheduler(address: str, option: str = "--scheduler") -> str:
    """``address`` if it is ``tcp://HOST:PORT`` (a port from 1 to 65535), else a ValueError."""
    match = _ADDRESS.fullmatch(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{option} must look like tcp://HOST:PORT, not {address!r}")
    return address


@contextlib.contextmanager
def connect(address: str, timeout: float = 10.0):
    """A Dask client connected to the running scheduler at ``address`` (closed after).

    Raises
    ------
    ValueError
        ``address`` is not ``tcp://HOST:PORT``.
    OSError
        No scheduler answers there within ``timeout`` seconds.
    """
    from dask.distributed import Client

    check_scheduler(address)
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise OSError(
            f"--scheduler {address}: no Dask scheduler answers there ({type(exc).__name__})"
        ) from None
    try:
        yield client
    finally:
        client.close()
