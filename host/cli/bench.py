"""``systolic bench`` and ``systolic bench-core``: the benchmarks."""

import json
import os

import click

from systolic.hw.cli import (
    CONTEXT_SETTINGS,
    CliError,
    config_from_options,
    config_option,
    run,
    size_option,
)

from ..files import atomic_write, check_output_path
from ..nn.bundled import DEFAULT_CHECKPOINTS, MODEL_NAMES
from ..parallel import check_scheduler
from .options import MODEL_HELP, check_positive, json_option

__all__ = ["SWEEPS", "command", "core_command", "main", "main_core"]

#: The sweep sizes (systolic.host.bench.SIZES): images in the sweep, RTL samples, sharded run.
SWEEPS = ("quick", "full")


@click.command("bench", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--sweep",
    type=click.Choice(SWEEPS),
    default="full",
    help="how many images the sweep, the RTL samples and the sharded run take",
)
@click.option("--workers", type=int, default=2, help="local processes of the sharded RTL run")
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    default=None,
    show_default="a local Dask cluster",
    help="the Dask cluster of the sharded run",
)
@click.option(
    "--clock-mhz",
    type=float,
    default=None,
    show_default="the synthesized Fmax, or 100",
    help="the clock the time figures assume",
)
@click.option("--out", metavar="DIR", default=os.path.join("build", "bench"))
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME|FILE",
    show_default=f"{', '.join(MODEL_NAMES)}, each in a folder of --out",
    help=f"{MODEL_HELP}; repeat for several",
)
@click.option(
    "--gpu/--no-gpu",
    default=True,
    help="measure PyTorch on a CUDA GPU when there is one (the report says when not)",
)
@click.option(
    "--ddp/--no-ddp",
    default=True,
    help="measure data-parallel training (PyTorch DDP over gloo, 2 processes)",
)
@click.option(
    "--ddp-epochs", type=int, default=None, show_default="the sweep's", help="DDP's epochs"
)
@click.option(
    "--ddp-images",
    type=int,
    default=None,
    show_default="the sweep's: the whole training split for full",
    help="images of each DDP epoch",
)
def command(
    sweep: str,
    workers: int,
    scheduler: str | None,
    clock_mhz: float | None,
    out: str,
    models: tuple[str, ...],
    gpu: bool,
    ddp: bool,
    ddp_epochs: int | None,
    ddp_images: int | None,
) -> int:
    """Benchmark the core against PyTorch on the CPU (and a CUDA GPU when present),
    data-parallel training and sharded simulation: array sizes x batch on the
    cycle-exact model, a per-layer cycle breakdown, RTL samples; writes bench.json,
    REPORT.md, report.html and plots."""
    names = list(models) or list(MODEL_NAMES)
    paths = [DEFAULT_CHECKPOINTS.get(m, m) for m in names]
    try:
        check_positive(workers=workers)
        for name, value in (("--ddp-epochs", ddp_epochs), ("--ddp-images", ddp_images)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, not {value}")
        if clock_mhz is not None:
            from ..run import check_clock_mhz

            check_clock_mhz(clock_mhz)
        if scheduler is not None:
            check_scheduler(scheduler)
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out}: is not a directory")
        check_output_path(os.path.join(out, "bench.json"), "--out")
        for name, path in zip(names, paths, strict=True):
            if not os.path.isfile(path):
                raise ValueError(f"--model {name}: no such file")
        dirs = [os.path.splitext(os.path.basename(m))[0] for m in paths]
        if len(set(dirs)) != len(dirs):
            raise ValueError(f"--model: two models would share the folder {dirs}")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    from ..bench import bench, report_md, write_combined_report

    results = []
    try:
        for path, sub in zip(paths, dirs, strict=True):
            where = os.path.join(out, sub) if len(paths) > 1 else out
            print(f"== {path}", flush=True)
            results.append(
                bench(
                    sweep,
                    workers,
                    where,
                    clock_mhz,
                    model=path,
                    scheduler=scheduler,
                    gpu=gpu,
                    ddp=ddp,
                    ddp_epochs=ddp_epochs,
                    ddp_images=ddp_images,
                )
            )
    except (OSError, ValueError) as exc:  # CheckpointError, QuantError, OnnxError
        raise CliError(str(exc)) from None
    if len(results) > 1:  # one report for all, beside the folders; headings one level down
        write_combined_report(results, dirs, out)
    for r in results:
        print(report_md(r))
    bad = [e for r in results for e in r["sweep"] if e["mismatches"]] + [
        s for r in results for s in r["rtl"] if not (s["outputs_equal"] and s["cycles_equal"])
    ]
    if bad:
        click.echo("error: a backend disagreed with the golden model or the cycle model", err=True)
        print(f"FAIL: {len(bad)} runs disagreed with the golden model or the cycle model")
        return 1
    print(f"PASS: {len(results)} networks, every run equal to the golden and the cycle model")
    return 0


@click.command("bench-core", context_settings=CONTEXT_SETTINGS)
@size_option()
@config_option()
@click.option("--shape", default="64x784x128", metavar="MxKxN", help="the matmul's shape")
@json_option(default=os.path.join("build", "bench", "core.json"))
def core_command(size: str, config: str | None, shape: str, json_path: str) -> int:
    """One large matmul (M x K by K x N) through the RTL: utilization, and the simulation
    speed against Verilator's ceiling (the same harness driven from C++)."""
    parts = shape.lower().split("x")
    if len(parts) != 3 or not all(n.isdigit() and int(n) > 0 for n in parts):
        raise CliError(f"--shape must be MxKxN with positive integers, not {shape!r}")
    cfg = config_from_options(size, config)
    M, K, N = (int(n) for n in parts)
    from ..backends import BackendError
    from ..bench import bench_core

    try:
        check_output_path(json_path, "--json")
        res = bench_core(cfg, M, K, N)
    except (OSError, ValueError, TypeError, BackendError) as exc:  # CompileError: ValueError
        raise CliError(str(exc)) from None
    with atomic_write(json_path, "w") as f:
        json.dump(res, f, indent=2)
    for k, v in res.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    if res["mismatches"] != 0 or res["error"] != 0:
        click.echo("error: outputs differ from the numpy reference", err=True)
        print(f"FAIL: rtl {cfg.rows}x{cfg.cols}, {M}x{K}x{N}, {res['mismatches']} mismatches")
        return 1
    if not res["ceiling_equal"] or res["ceiling_cycles"] != res["sim_cycles"]:
        click.echo("error: Verilator's ceiling disagrees with the rtl backend", err=True)
        print(f"FAIL: rtl {cfg.rows}x{cfg.cols}, {M}x{K}x{N}, the ceiling disagrees")
        return 1
    print(f"PASS: rtl {cfg.rows}x{cfg.cols}, {M}x{K}x{N}, 0 mismatches, ceiling equal")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``systolic bench`` with ``argv``; returns the exit status."""
    return run(command, argv, prog_name="systolic bench")


def main_core(argv: list[str] | None = None) -> int:
    """``systolic bench-core`` with ``argv``; returns the exit status."""
    return run(core_command, argv, prog_name="systolic bench-core")
