"""The command line: ``systolic <command> [options]`` (also ``python -m systolic.host``).

One click group; each command is a thin layer over the library (parse, check the
options before any work, call, print). A bad option or input is one ``error:`` line on
stderr and exit status 2 (:mod:`systolic.hw.cli`). Commands are imported when they run (or
show their help), so that ``systolic --help`` loads neither torch nor amaranth; the
hardware commands live beside what they drive (``rtl`` in ``systolic.hw.generate``, ``synth``
in ``systolic.hw.synth.cli``, ``formal`` in ``systolic.sim.formal``).
"""

import importlib
import sys

import click

from systolic.hw.cli import CONTEXT_SETTINGS, run

__all__ = ["COMMANDS", "cli", "main"]

#: command -> (module, click command in it, one line of help)
COMMANDS = {
    "train": ("systolic.host.cli.train", "command", "train the MNIST MLP or CNN in PyTorch"),
    "quantize": (
        "systolic.host.cli.quantize",
        "command",
        "int8-quantize a checkpoint, report vs PyTorch",
    ),
    "compile": ("systolic.host.cli.compile", "command", "compile a network into a program file"),
    "infer": (
        "systolic.host.cli.infer",
        "command",
        "MNIST through a backend, checked vs golden and PyTorch",
    ),
    "bench": (
        "systolic.host.cli.bench",
        "command",
        "the core against PyTorch on this CPU: report, plots",
    ),
    "bench-core": ("systolic.host.cli.bench", "core_command", "one large matmul through the RTL"),
    "rtl": ("systolic.hw.generate", "command", "write the core's Verilog and configuration JSON"),
    "synth": ("systolic.hw.synth.cli", "command", "Yosys and nextpnr for ECP5 and iCE40"),
    "formal": ("systolic.sim.formal", "command", "SymbiYosys proofs of the core's stream contract"),
    "bitstream": (
        "systolic.hw.board.build",
        "command",
        "an FPGA board's bitstream (ULX3S) with its timing report",
    ),
    "board-link": (
        "systolic.host.cli.board",
        "command",
        "the board's serial link figures for the MNIST MLP",
    ),
}


class _Commands(click.Group):
    """A group that imports a command's module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


@click.group(cls=_Commands, context_settings=CONTEXT_SETTINGS)
def cli() -> None:
    """An int8 systolic matmul core: train and quantize an MNIST network, compile it, run
    it on the simulated RTL (or the gate-level netlist, or the cycle-exact model),
    benchmark, synthesize, prove.

    'systolic COMMAND --help' describes a command's options.
    """


def main(argv: list[str] | None = None) -> int:
    """Run ``systolic`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # the commands, not click's bare usage line
        argv = ["--help"]
    return run(cli, argv, prog_name="systolic")
