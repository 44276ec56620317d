"""``systolic board-link``: the serial link's figures for the MNIST MLP on a board build."""

import click

from systolic.hw.board.protocol import DEFAULT_BAUD
from systolic.hw.cli import CONTEXT_SETTINGS, CliError, run

from ..files import check_output_path

__all__ = ["command", "main"]

#: images the figures are computed over (one program)
LINK_IMAGES = 32


@click.command("board-link", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    metavar="FILE",
    required=True,
    help="the board build's config.json (build/bitstream/<board>-<size>/)",
)
@click.option(
    "--clk-mhz",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    help="the core's clock on the board",
)
@click.option(
    "--baud", type=click.IntRange(min=1), default=DEFAULT_BAUD, help="the serial link's rate"
)
@click.option("--report", metavar="FILE", default=None, help="a report.md to append the table to")
def command(config: str, clk_mhz: float, baud: int, report: str | None) -> int:
    """The link figures of the MNIST MLP on a board build: bytes each way, serial and
    core time per image (exact cycle model), printed and appended to the build's report
    with --report."""
    from systolic.hw.config import CoreConfig

    try:
        with open(config) as f:
            cfg = CoreConfig.from_json(f.read())
    except OSError as exc:
        raise CliError(f"--config {config}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise CliError(f"--config {config}: {exc}") from None
    if report is not None:
        try:
            check_output_path(report, "--report")
        except ValueError as exc:
            raise CliError(str(exc)) from None

    from ..backends.board import SERIAL_ROUND_TRIP_S, figures_markdown, link_figures
    from ..nn.data import load_mnist
    from ..nn.qmodel import DEFAULT_QUANTIZED, QuantizedModel

    qmodel = QuantizedModel.load(DEFAULT_QUANTIZED)
    images = qmodel.quantize_input(load_mnist().test_images[:LINK_IMAGES])
    table = figures_markdown(
        link_figures(qmodel, cfg, clk_mhz, baud, LINK_IMAGES, images), clk_mhz, baud
    )
    text = (
        f"\n## The link: MNIST MLP ({qmodel.sizes}) on the {cfg.rows}x{cfg.cols} core\n\n"
        + table
        + "\nSerial: 8N1, requests and responses one at a time, plus "
        f"{SERIAL_ROUND_TRIP_S * 1e3:g} ms a round (USB latency timer); the core: exact "
        "cycle model.\n"
    )
    print(text)
    if report is not None:
        with open(report, "a") as f:
            f.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``systolic board-link`` as a function (returns the exit status)."""
    return run(command, argv, prog_name="systolic board-link")
