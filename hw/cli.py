"""What every command of the ``systolic`` tool shares: click settings, one-line errors and
the ``--size RxC`` and ``--config FILE`` options.

The commands live beside what they drive (``systolic.hw.generate``, ``systolic.hw.synth.cli``,
``systolic.sim.formal``, ``systolic.host.cli``); this module is the one place that says how a
command
reports a bad input: ``error: <what is wrong>`` on one line of stderr and exit status 2.
It imports nothing but click and :mod:`systolic.hw.config`, so that ``--help`` stays fast.
"""

import sys
from collections.abc import Callable

import click

from .config import CoreConfig

__all__ = [
    "CONTEXT_SETTINGS",
    "CliError",
    "config_from_options",
    "config_option",
    "parse_size",
    "run",
    "size_option",
]

#: Settings of every command: defaults shown in ``--help``, ``-h`` as well as ``--help``.
CONTEXT_SETTINGS = {
    "show_default": True,
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


class CliError(click.ClickException):
    """A bad option value or input file: printed as ``error: <message>``, exit status 2."""

    exit_code = 2


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """``"8x8"`` -> ``(8, 8)``: an array size written ``ROWSxCOLS``.

    Raises
    ------
    CliError
        ``text`` is not two positive integers joined by ``x``.
    """
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise CliError(f"{option} must look like 8x8 (ROWSxCOLS), not {text!r}")
    return int(parts[0]), int(parts[1])


def size_option(default: str = "8x8", **kwargs):
    """The ``--size RxC`` option (rows x columns of the array)."""
    return click.option(
        "--size",
        default=default,
        metavar="RxC",
        help=kwargs.pop("help", "array size, rows x columns"),
        **kwargs,
    )


def config_option():
    """The ``--config FILE`` option (a ``CoreConfig`` JSON file, instead of ``--size``)."""
    return click.option(
        "--config", metavar="FILE", help="CoreConfig JSON file (every field; instead of --size)"
    )


def config_from_options(
    size: str, config: str | None, make: Callable[[int, int], CoreConfig] | None = None
) -> CoreConfig:
    """The configuration that ``--size`` and ``--config`` describe: the file's, else
    ``make(rows, cols)``.

    Raises
    ------
    CliError
        Both options given, an unreadable file, or a configuration CoreConfig refuses.
    """
    if config is not None:
        ctx = click.get_current_context(silent=True)
        if ctx is not None and ctx.get_parameter_source("size") not in (
            None,
            click.core.ParameterSource.DEFAULT,
        ):
            raise CliError("--size and --config both describe the array; give one")
        try:
            with open(config) as f:
                return CoreConfig.from_json(f.read())
        except OSError as exc:
            raise CliError(f"--config {config}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise CliError(f"--config {config}: {exc}") from None
    rows, cols = parse_size(size)
    try:
        return make(rows, cols) if make else CoreConfig(rows=rows, cols=cols)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None


def run(command: click.Command, argv: list[str] | None = None, prog_name: str | None = None) -> int:
    """Run ``command`` on ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    A usage error (an unknown option, a value of the wrong type) and a :class:`CliError`
    print one ``error:`` line on stderr and give 2; ``--help`` gives 0; otherwise the
    command's own return value (None for 0).
    """
    try:
        rv = command.main(
            args=sys.argv[1:] if argv is None else list(argv),
            prog_name=prog_name,
            standalone_mode=False,
        )
    except click.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        print(f"error: {_one_line(exc.format_message())}{hint}", file=sys.stderr)
        return 2
    except click.ClickException as exc:
        print(f"error: {_one_line(exc.format_message())}", file=sys.stderr)
        return exc.exit_code
    except click.Abort:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0 if rv is None else int(rv)


def _one_line(text: str) -> str:
    return text.strip().replace("\n", " ")
