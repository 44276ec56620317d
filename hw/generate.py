"""Write the core's Verilog and its configuration JSON: ``python -m hw.generate``."""

import argparse
import functools
import hashlib
import os
import sys

from amaranth.back import verilog

from .config import CoreConfig
from .core import Core
from .util.files import atomic_write

__all__ = ["generate", "source_hash", "main"]


@functools.cache
def source_hash():
    """Hash of the hardware description's source (``hw/*.py``; the synthesis flow is the
    package ``hw/synth/``, not part of it).

    Build caches (Verilog, simulators, netlists, synthesis results) are keyed by it.
    Taken once per process, as the modules are loaded, so that what is generated and
    the hash it is stored under always belong together even if files change meanwhile.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()[:16]


def generate(cfg, out_dir, name="core"):
    """Write ``<name>.v`` and ``<name>.json`` for ``cfg`` into ``out_dir``.

    Both files are written under temporary names and renamed, so an interrupted run
    leaves no half-written Verilog. Returns the Verilog path.
    """
    os.makedirs(out_dir, exist_ok=True)
    core = Core(cfg)
    text = verilog.convert(core, name=name, emit_src=False)
    paths = {}
    for ext, body in (("v", text), ("json", cfg.to_json() + "\n")):
        paths[ext] = os.path.join(out_dir, f"{name}.{ext}")
        with atomic_write(paths[ext], "w") as f:
            f.write(body)
    return paths["v"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hw.generate", description=__doc__)
    parser.add_argument("--rows", type=int, default=CoreConfig.rows)
    parser.add_argument("--cols", type=int, default=CoreConfig.cols)
    parser.add_argument("--config", help="configuration JSON file (overrides --rows/--cols)")
    parser.add_argument("-o", "--out", default=None, help="output directory (build/<tag>/rtl)")
    args = parser.parse_args(argv)
    try:
        if args.config:
            with open(args.config) as f:
                cfg = CoreConfig.from_json(f.read())
        else:
            cfg = CoreConfig(rows=args.rows, cols=args.cols)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or os.path.join("build", cfg.tag, "rtl")
    path = generate(cfg, out)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
