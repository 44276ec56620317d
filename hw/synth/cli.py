"""Synthesis, place and route with Yosys and nextpnr from pip: ``python -m hw.synth``.

For each configuration: the core inside :class:`SynthTop` (a shell that feeds the
program port from a shift register loaded through one pin and folds the result port
into a registered byte, so that every bit of the core stays live while the package
pins suffice), Yosys ``synth_ecp5``/``synth_ice40``, nextpnr with
``--timing-allow-fail`` (missed timing is reported, not an error), and the figures
read back from nextpnr's JSON report. Results are cached by configuration hash under
``build/<tag>/synth-<family>/``; the summary goes to ``build/synth/report.json`` and
``build/synth/report.md``.
"""

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from ..config import CoreConfig
from ..util.files import atomic_write
from .reports import table
from .run import synthesize
from .targets import TARGETS

__all__ = ["DEFAULT_RUNS", "DEFAULT_TIMEOUT_MIN", "main"]

#: minutes nextpnr may take for one configuration in ``make synth``
DEFAULT_TIMEOUT_MIN = 120

#: configurations synthesized by default: (family, rows, cols, buffer sizes)
DEFAULT_RUNS = [
    ("ecp5", CoreConfig(rows=4, cols=4, act_kib=64, weight_kib=64, acc_kib=32)),
    ("ecp5", CoreConfig(rows=8, cols=8, act_kib=64, weight_kib=96, acc_kib=32)),
    # 16x16: smaller activation buffers and 16 parameter words (LUT RAM), so 107 block
    # RAMs instead of 161; with 161, router2 got down to 641 overused wires and then
    # diverged, with 107 it routes
    (
        "ecp5",
        CoreConfig(
            rows=16, cols=16, act_kib=16, hidden_kib=16, weight_kib=96, acc_kib=32, param_depth=16
        ),
    ),
    # the UP5K has 30 block RAMs of 4 Kbit and 5,280 logic cells: the buffers shrink to
    # a few KiB and post-processing takes the shallow pipeline
    (
        "ice40",
        CoreConfig(
            rows=2,
            cols=2,
            act_kib=2,
            hidden_kib=1,
            weight_kib=2,
            acc_kib=1,
            param_depth=16,
            deep_pipeline=False,
        ),
    ),
    (
        "ice40",
        CoreConfig(
            rows=4,
            cols=4,
            act_kib=2,
            hidden_kib=1,
            weight_kib=2,
            acc_kib=1,
            param_depth=16,
            deep_pipeline=False,
        ),
    ),
]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hw.synth", description=__doc__)
    p.add_argument("--family", choices=["ecp5", "ice40", "all"], default="all")
    p.add_argument("--sizes", default=None, help="e.g. 4x4,8x8 (default: the standard set)")
    p.add_argument("--force", action="store_true", help="ignore cached results")
    p.add_argument("--out", default=os.path.join("build", "synth"))
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="configurations run side by side (default: one per core)",
    )
    p.add_argument(
        "--route-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_MIN,
        metavar="MIN",
        help="stop nextpnr after this many minutes and report "
        f"the configuration as unrouted (default {DEFAULT_TIMEOUT_MIN})",
    )
    args = p.parse_args(argv)
    if args.jobs < 1 or args.route_timeout <= 0:
        p.error("--jobs must be at least 1 and --route-timeout above 0")
    runs = [(fam, cfg) for fam, cfg in DEFAULT_RUNS if args.family in ("all", fam)]
    if args.sizes:
        try:
            want = {tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")}
        except ValueError:
            print(f"error: --sizes must look like 4x4,8x8, not {args.sizes!r}", file=sys.stderr)
            return 2
        runs = [(fam, cfg) for fam, cfg in runs if (cfg.rows, cfg.cols) in want]
        known = {(c.rows, c.cols) for _, c in runs}
        for r, c in sorted(want - known):
            runs.append(
                (
                    "ecp5" if args.family != "ice40" else "ice40",
                    CoreConfig(rows=r, cols=c, act_kib=32, weight_kib=32, acc_kib=16),
                )
            )

    def one(run):
        fam, cfg = run
        print(f"synthesizing {cfg.rows}x{cfg.cols} for {TARGETS[fam][0]} ...", flush=True)
        e = synthesize(fam, cfg, args.force, timeout_min=args.route_timeout)
        print(
            f"done: {cfg.rows}x{cfg.cols} for {TARGETS[fam][0]}, "
            f"Fmax {e['fmax_mhz'] or '-'} MHz ({e.get('seconds', 0):.0f} s)",
            flush=True,
        )
        return e

    # each run is one Yosys and one single-threaded nextpnr process; the largest start
    # first, so that the small ones fill in beside them
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            i: pool.submit(one, runs[i])
            for i in sorted(range(len(runs)), key=lambda i: -runs[i][1].rows * runs[i][1].cols)
        }
        entries = [futures[i].result() for i in range(len(runs))]
    os.makedirs(args.out, exist_ok=True)
    for name, body in (
        ("report.json", json.dumps(entries, indent=2)),
        ("report.md", table(entries)),
    ):
        with atomic_write(os.path.join(args.out, name), "w") as f:
            f.write(body)
    print(table(entries))
    return 0
