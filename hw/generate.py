"""Write the core's Verilog and its configuration JSON: ``systolic rtl`` (or
``python -m systolic.hw.generate``)."""

import functools
import hashlib
import os
import sys

import click

from .cli import CONTEXT_SETTINGS, CliError, config_from_options, config_option, run, size_option
from .util.files import atomic_write

__all__ = ["generate", "source_hash", "command", "main"]


#: Modules of ``hw/`` that describe no hardware: not part of :func:`source_hash`.
NOT_HARDWARE = ("cli.py", "generate.py")


@functools.cache
def source_hash():
    """Hash of the hardware description's source (``hw/*.py``; the synthesis flow is the
    package ``hw/synth/``, not part of it, nor are the command-line conventions,
    ``hw/cli.py``, or this module, which writes the Verilog and holds the ``rtl``
    command: :data:`NOT_HARDWARE`).

    Build caches (Verilog, simulators, netlists, synthesis results) are keyed by it.
    Taken once per process, as the modules are loaded, so that what is generated and
    the hash it is stored under always belong together even if files change meanwhile.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for name in sorted(os.listdir(here)):
        if name.endswith(".py") and name not in NOT_HARDWARE:
            with open(os.path.join(here, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()[:16]


def generate(cfg, out_dir, name="core"):
    """Write ``<name>.v`` and ``<name>.json`` for ``cfg`` into ``out_dir``.

    Both files are written under temporary names and renamed, so an interrupted run
    leaves no half-written Verilog. Returns the Verilog path.
    """
    from amaranth.back import verilog

    from .core import Core

    os.makedirs(out_dir, exist_ok=True)
    core = Core(cfg)
    text = verilog.convert(core, name=name, emit_src=False)
    paths = {}
    for ext, body in (("v", text), ("json", cfg.to_json() + "\n")):
        paths[ext] = os.path.join(out_dir, f"{name}.{ext}")
        with atomic_write(paths[ext], "w") as f:
            f.write(body)
    return paths["v"]


@click.command("rtl", context_settings=CONTEXT_SETTINGS)
@size_option()
@config_option()
@click.option(
    "-o",
    "--out",
    metavar="DIR",
    default=None,
    show_default="build/<tag>/rtl",
    help="output directory",
)
def command(size: str, config: str | None, out: str | None) -> int:
    """Write the core's Verilog (core.v) and its configuration (core.json)."""
    cfg = config_from_options(size, config)
    out = out or os.path.join("build", cfg.tag, "rtl")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CliError(f"--out {out}: is not a directory")
    print(generate(cfg, out))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m systolic.hw.generate``: the same command as ``systolic rtl``."""
    return run(command, argv, prog_name="python -m systolic.hw.generate")


if __name__ == "__main__":
    sys.exit(main())
