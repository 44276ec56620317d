"""``systolic compile``: a network compiled into a program file for one core configuration."""

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

from ..files import check_output_path
from ..nn.bundled import DEFAULT_CHECKPOINTS
from .options import check_positive, data_dir_option, model_option, torch_threads

__all__ = ["command", "main"]


@click.command("compile", context_settings=CONTEXT_SETTINGS)
@model_option()
@size_option()
@config_option()
@click.option("--batch", type=int, default=None, show_default="64, or the most the buffers hold")
@data_dir_option()
@click.option(
    "--out",
    metavar="FILE",
    default=None,
    show_default="build/programs/<model>-<tag>-b<batch>.prog",
    help="program file to write",
)
def command(
    model: str,
    size: str,
    config: str | None,
    batch: int | None,
    data_dir: str | None,
    out: str | None,
) -> int:
    """Compile a network (quantizing a float checkpoint first) into a program for the
    core: the file holds the configuration, the resident preamble and the schedule, with
    a SHA-256 checked when it is read (systolic.host.compile.Program.load)."""
    try:
        check_positive(batch=batch)
        if out is not None:
            check_output_path(out, "--out")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    cfg = config_from_options(size, config)
    torch_threads()
    from ..compile import compile_model, max_batch
    from ..nn.data import load_mnist
    from ..nn.quantize import load_for_inference

    path = DEFAULT_CHECKPOINTS.get(model, model)
    try:
        qmodel, _, _ = load_for_inference(path, load_mnist(data_dir))
        most = max_batch(qmodel, cfg)
        batch = min(64, most) if batch is None else batch
        program = compile_model(qmodel, cfg, batch)
        stem = os.path.splitext(os.path.basename(path))[0]
        out = out or os.path.join("build", "programs", f"{stem}-{cfg.tag}-b{batch}.prog")
        check_output_path(out, "--out")
        program.save(out)
    except (OSError, ValueError, TypeError) as exc:  # CompileError, CheckpointError, ...
        raise CliError(str(exc)) from None
    print(
        f"compiled {path} for {cfg.rows}x{cfg.cols} ({cfg.tag}), batch {batch}: "
        f"{len(program.preamble)} preamble beats, {program.useful_macs(batch):,} MACs a "
        f"batch -> {out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``systolic compile`` with ``argv``; returns the exit status."""
    return run(command, argv, prog_name="systolic compile")
