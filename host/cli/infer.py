"""``systolic infer``: MNIST through the core, checked against the golden model and PyTorch."""

import glob
import logging
import os
import time

import click

from systolic.hw.board.protocol import DEFAULT_BAUD
from systolic.hw.cli import (
    CONTEXT_SETTINGS,
    CliError,
    config_from_options,
    config_option,
    run,
    size_option,
)

from ..backends import BACKENDS, BackendError
from ..files import atomic_write, check_output_path
from ..nn.bundled import DEFAULT_CHECKPOINTS
from ..parallel import check_scheduler
from .options import check_positive, data_dir_option, json_option, model_option, torch_threads

__all__ = ["command", "main", "verdict"]

#: Images the simulated backends run when --limit is not given (the model runs them all).
SIM_LIMIT = 256


def _print(report: dict) -> None:
    print(
        f"-- {report['backend']} backend, {report['rows']}x{report['cols']} array, "
        f"{report['images']} images, batch {report['batch']}"
    )
    for k, v in report.items():
        if k in ("backend",):
            continue
        print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")


def _ok(report: dict) -> bool:
    return not report["mismatches"] and not report["error"] and report["cycles_match"]


def verdict(reports: list[dict]) -> str:
    """One line for a run: ``PASS: rtl 8x8, 256 images, 0 mismatches, 433,838 cycles =
    model`` (``FAIL: ...`` when an output byte differs from the golden model, the core
    reports an error or the cycles differ from the cycle model); runs joined by ``;``."""
    parts = []
    for r in reports:
        cycles, predicted = r["cycles"], r["predicted_cycles"]
        part = (
            f"{r['backend']} {r['rows']}x{r['cols']}, {r['images']:,} "
            f"image{'s' if r['images'] != 1 else ''}, {r['mismatches']:,} mismatches"
        )
        if r["error"]:
            part += f", core error code {r['error']}"
        if r["backend"] == "model":
            part += f", {cycles:,} cycles"
        elif cycles == predicted:
            part += f", {cycles:,} cycles = model"
        else:
            part += f", {cycles:,} cycles != model {predicted:,}"
        parts.append(part)
    word = "PASS" if all(_ok(r) for r in reports) else "FAIL"
    return f"{word}: {'; '.join(parts)}"


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


@click.command("infer", context_settings=CONTEXT_SETTINGS)
@click.option("--backend", type=click.Choice(BACKENDS), default="rtl")
@size_option()
@config_option()
@model_option()
@data_dir_option()
@click.option(
    "--limit",
    type=int,
    default=None,
    show_default=f"all; {SIM_LIMIT} for rtl and gate",
    help="test images",
)
@click.option(
    "--batch",
    type=int,
    default=None,
    show_default="64, or the most the buffers hold",
    help="images per batch",
)
@json_option()
@click.option(
    "--clock-mhz",
    type=float,
    default=None,
    show_default="the synthesized Fmax, or 100",
    help="the clock the time figures assume",
)
@click.option(
    "--shard", type=int, default=None, show_default="all in one", help="images per backend run"
)
@click.option("--workers", type=int, default=1, help="backend runs side by side (local processes)")
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    default=None,
    help="run the shards on this Dask cluster instead of local processes",
)
@click.option(
    "--waves",
    is_flag=True,
    help="keep a waveform (VCD) of the rtl or gate run under build/<tag>/waves/ "
    "(a separate traced simulator build; the same as WAVES=1); --limit defaults to one "
    "batch, as a VCD takes some 10 KB a simulated cycle",
)
@click.option(
    "--port",
    metavar="DEVICE",
    default=None,
    help="the board backend's serial port (e.g. /dev/ttyUSB0; see docs/BOARD.md)",
)
@click.option(
    "--baud",
    type=int,
    default=None,
    show_default=f"{DEFAULT_BAUD}, the board build's rate",
    help="the board backend's serial rate",
)
@click.option("--demo", is_flag=True, help="rtl on 256 images, then model on the whole test split")
@click.pass_context
def command(
    ctx: click.Context,
    backend: str,
    size: str,
    config: str | None,
    model: str,
    data_dir: str | None,
    limit: int | None,
    batch: int | None,
    json_path: str | None,
    clock_mhz: float | None,
    shard: int | None,
    workers: int,
    scheduler: str | None,
    waves: bool,
    port: str | None,
    baud: int | None,
    demo: bool,
) -> int:
    """Run the MNIST test images through a backend (rtl: the Verilog in Verilator; gate:
    the synthesized netlist; model: the bit- and cycle-exact numpy model).

    Takes a float checkpoint (.pt, quantized here with a deterministic calibration), a
    quantized model written by 'systolic quantize' (.qnpz; the float checkpoint named
    and hashed inside it is loaded for the PyTorch comparison) or a quantized ONNX file.
    Every output byte is checked against the integer golden model and every prediction
    against PyTorch (float and int8). Ends with a PASS or FAIL line; the exit status is
    1 if an output differs, the core reports an error or the cycles differ from the
    cycle model.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        check_positive(limit=limit, batch=batch, shard=shard, workers=workers)
        if clock_mhz is not None:
            from ..run import check_clock_mhz

            check_clock_mhz(clock_mhz)
        if scheduler is not None:
            check_scheduler(scheduler)
            if _explicit(ctx, "workers"):
                raise ValueError("--workers and --scheduler: the cluster's workers run the shards")
        if waves:
            simulated = ["rtl"] if demo else [backend]
            if "model" in simulated:
                raise ValueError("--waves needs the rtl or gate backend, not model")
            if workers > 1 or scheduler is not None:
                raise ValueError(
                    "--waves keeps one run's waveform: not with --workers or --scheduler"
                )
        if (port is not None or baud is not None) and (backend != "board" or demo):
            raise ValueError("--port and --baud are the board backend's (--backend board)")
        if backend == "board" and port is None:
            raise ValueError("--backend board needs --port (the board's serial device)")
        if backend == "board" and (workers > 1 or scheduler is not None):
            raise ValueError("--backend board runs on one board: not with --workers or --scheduler")
        if json_path:
            check_output_path(json_path, "--json")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    from ..backends import default_config

    board = {"port": port, **({"baud": baud} if baud is not None else {})}

    cfg = config_from_options(size, config, lambda r, c: default_config(backend, r, c))
    torch_threads()
    from ..compile import CompileError, ProgramError, max_batch
    from ..nn.checkpoint import CheckpointError
    from ..nn.data import DataError, load_mnist
    from ..nn.quantize import load_for_inference
    from ..run import evaluate

    started = time.time()
    # --waves is WAVES=1 for this run: systolic.sim.runner (and cocotb) read it
    saved = os.environ.get("WAVES")
    if waves:
        os.environ["WAVES"] = "1"
    try:
        data = load_mnist(data_dir)
        model = DEFAULT_CHECKPOINTS.get(model, model)
        qmodel, reference, float_model = load_for_inference(model, data)
        most = max_batch(qmodel, cfg)
        if batch is None:
            batch = min(64, most)
        if batch > most:
            raise CompileError(
                f"batch {batch} does not fit the {cfg.rows}x{cfg.cols} "
                f"buffers; use --batch {most} or less"
            )
        sim_limit = limit or (batch if waves else SIM_LIMIT)
        runs = (
            [("rtl", sim_limit), ("model", None)]
            if demo
            else [(backend, sim_limit if backend != "model" else limit)]
        )
        reports = []
        for name, n in runs:
            n = len(data.test_images) if n is None else min(n, len(data.test_images))
            print(f"-- {n} images through the {name} backend ({cfg.rows}x{cfg.cols})", flush=True)
            report, _ = evaluate(
                cfg,
                name,
                data.test_images[:n],
                data.test_labels[:n],
                qmodel,
                reference,
                float_model,
                batch,
                clock_mhz,
                shard,
                workers,
                scheduler=scheduler,
                backend_options=board if name == "board" else None,
            )
            report["data"] = data.source
            report["model"] = model
            reports.append(report)
            _print(report)
        if json_path:
            import json

            with atomic_write(json_path, "w") as f:
                json.dump(reports[0] if len(reports) == 1 else {"runs": reports}, f, indent=2)
    except (
        OSError,
        ValueError,
        TypeError,
        DataError,
        CheckpointError,
        CompileError,
        ProgramError,
        BackendError,
    ) as exc:
        raise CliError(str(exc)) from None
    finally:
        if waves and saved is None:
            del os.environ["WAVES"]
        elif waves:
            os.environ["WAVES"] = saved
    # the waveforms of this run: asked for by --waves, or by WAVES in the environment
    # (read as cocotb and systolic.sim.build.waves_requested read it)
    if waves or (saved or "").strip().lower() in ("1", "yes", "y", "on", "true", "enable"):
        kept = sorted(
            p
            for p in glob.glob(os.path.join("build", cfg.tag, "waves", "*"))
            if os.path.getmtime(p) >= started
        )
        for path in kept:
            print(f"waves: {path} ({os.path.getsize(path) / 1e6:,.0f} MB)")
        if waves and not kept:
            raise CliError(f"--waves: the simulator wrote no waveform under build/{cfg.tag}/waves")
    bad = [r for r in reports if not _ok(r)]
    for r in bad:
        click.echo(
            f"error: {r['backend']}: {r['mismatches']} output bytes differ from the golden "
            f"model, core error code {r['error']}, {r['cycles']} cycles against "
            f"{r['predicted_cycles']} predicted",
            err=True,
        )
    print(verdict(reports))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``systolic infer`` with ``argv``; returns the exit status."""
    return run(command, argv, prog_name="systolic infer")
