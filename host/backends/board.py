"""The ``board`` backend: a program through the core on an FPGA board, over its serial link.

The board runs the bitstream of ``make bitstream`` (``hw/board/``); this backend speaks
the link protocol of :mod:`systolic.host.backends.link` over pyserial. The same protocol code
drives the simulated board top in ``sim/board_tb.py``, whose results the tests compare
with the rtl backend's, byte for byte.
"""

import time

import numpy as np

from systolic.hw.board.protocol import DEFAULT_BAUD

from .base import BackendError, Result
from .link import LinkError, LinkSession, SerialTransport, run_blocking
from .model.cycles import predict

__all__ = ["BoardBackend", "DEFAULT_BAUD"]


class BoardBackend:
    """Run programs on a board over a serial port.

    Parameters
    ----------
    config : CoreConfig
        The configuration the board's bitstream was built for.
    port : str
        The serial device (``/dev/ttyUSB0``).
    baud : int
        The board's rate.
    max_beats : int
        Beats a WRITE or READ frame carries at most (1..255).

    Raises
    ------
    BackendError
        No port, or a bad ``baud``/``max_beats``; from :meth:`run`, a port that cannot be
        opened or a link that fails after its retries.
    """

    name = "board"
    kind = "board"
    options = ("port", "baud", "max_beats")

    def __init__(self, config, port=None, baud=DEFAULT_BAUD, max_beats=255):
        if not isinstance(port, str) or not port:
            raise BackendError("the board backend needs a serial port (port=/dev/ttyUSB0)")
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            raise BackendError(f"board backend: baud must be a positive integer, not {baud!r}")
        if isinstance(max_beats, bool) or not isinstance(max_beats, int):
            raise BackendError(f"board backend: max_beats must be an integer, not {max_beats!r}")
        try:
            LinkSession(config.stream_bytes, max_beats)
        except ValueError as exc:
            raise BackendError(f"board backend: {exc}") from None
        self.config, self.port, self.baud, self.max_beats = config, port, baud, max_beats
        self._transport = None

    def prepare(self):
        """Open the port (once)."""
        if self._transport is None:
            try:
                self._transport = SerialTransport(self.port, self.baud)
            except LinkError as exc:
                raise BackendError(str(exc)) from None
        return self._transport

    def stream(self, beats):
        """Run raw program beats; returns ``(result beats, report)``."""
        transport = self.prepare()
        session = LinkSession(self.config.stream_bytes, self.max_beats)
        start = time.perf_counter()
        try:
            out = run_blocking(session.run(beats), transport)
        except LinkError as exc:
            raise BackendError(f"board on {self.port}: {exc}") from None
        return out, {"wall_seconds": time.perf_counter() - start, **vars(session.stats)}

    def run(self, program, inputs):
        program.check_config(self.config)
        beats = program.beats(inputs)
        out, report = self.stream(beats)
        outputs, status = program.parse_output(out, len(inputs))
        return Result(
            outputs=outputs,
            status=status,
            cycles=status["cycles"],
            predicted_cycles=predict(self.config, beats)["cycles"],
            wall_seconds=report["wall_seconds"],
            out_beats=np.asarray(out),
        )


#: Other links, for comparison: (name, payload bytes a second, round trips' latency in s).
FASTER_LINKS = (
    ("SPI at 30 Mbit/s", 30e6 / 8, 0.0),
    ("FT2232H synchronous FIFO (~40 MB/s)", 40e6, 125e-6),
)
#: An FT231X's USB latency timer at its lowest: what each request-response round costs
#: beyond the bytes on the line.
SERIAL_ROUND_TRIP_S = 1e-3


def wire_bytes(beats_in, beats_out, beat_bytes, max_beats=255):
    """Bytes on the line each way for a program of ``beats_in`` beats that returns
    ``beats_out`` (results and status), and the request-response rounds, with the
    fewest frames: a RESET, full WRITEs, full READs."""
    import systolic.hw.board.protocol as protocol

    writes = -(-beats_in // max_beats)
    reads = max(1, -(-beats_out // max_beats))
    rounds = 1 + writes + reads
    to_board = rounds * protocol.LINK_OVERHEAD + beats_in * beat_bytes
    to_host = rounds * protocol.LINK_OVERHEAD + beats_out * beat_bytes
    return to_board, to_host, rounds


def link_figures(qmodel, config, clk_mhz, baud=DEFAULT_BAUD, batch=32, images=None):
    """Throughput and latency over the serial link for ``qmodel`` on ``config``, beside
    the core's own time (exact cycle model) at ``clk_mhz`` and faster links.

    Rows: a batch of 1 and of ``batch`` images (weights included, as every program
    loads them), and each further image of a batch (weights amortized). Returns a list
    of dicts; :func:`figures_markdown` renders them.
    """
    from systolic.host.compile import compile_model

    from .model import ModelBackend

    rng = np.random.default_rng(0)
    x = images if images is not None else rng.integers(-128, 128, (batch, qmodel.in_features))
    x = np.asarray(x, np.int8)[:batch]
    backend = ModelBackend(config)
    rows = []
    runs = {}
    for n in (1, len(x)):
        prog = compile_model(qmodel, config, min(n, batch))
        result = backend.run(prog, x[:n])
        runs[n] = (len(prog.beats(x[:n])), len(result.out_beats), result.cycles)
    (b1, o1, c1), (bn, on, cn) = runs[1], runs[len(x)]
    marginal = ((bn - b1) / (len(x) - 1), (on - o1) / (len(x) - 1), (cn - c1) / (len(x) - 1))
    for label, (beats_in, beats_out, cycles), n in (
        ("1 image", runs[1], 1),
        (f"{len(x)} images", runs[len(x)], len(x)),
        ("each further image", marginal, 1),
    ):
        to_board, to_host, rounds = wire_bytes(
            int(round(beats_in)), int(round(beats_out)), config.stream_bytes
        )
        if label == "each further image":
            to_board, to_host = beats_in * config.stream_bytes, beats_out * config.stream_bytes
            rounds = 0
        line_s = (to_board + to_host) * 10 / baud  # 8N1, one direction at a time
        serial_s = line_s + rounds * SERIAL_ROUND_TRIP_S
        row = {
            "run": label,
            "images": n,
            "bytes_to_board": round(to_board),
            "bytes_to_host": round(to_host),
            "rounds": rounds,
            "serial_ms": serial_s * 1e3,
            "serial_images_per_s": n / serial_s,
            "core_ms": cycles / (clk_mhz * 1e3),
            "core_images_per_s": n / (cycles / (clk_mhz * 1e6)),
        }
        for name, rate, latency in FASTER_LINKS:
            row[name] = ((to_board + to_host) / rate + rounds * latency) * 1e3
        rows.append(row)
    return rows


def figures_markdown(rows, clk_mhz, baud=DEFAULT_BAUD):
    """The link figures as a markdown table (times in ms)."""
    faster = [name for name, _, _ in FASTER_LINKS]
    head = (
        f"| run | bytes to board | bytes to host | rounds | serial {baud / 1e6:g} Mbaud (ms) "
        f"| img/s | core at {clk_mhz:g} MHz (ms) | img/s | "
        + " | ".join(f"{n} (ms)" for n in faster)
    )
    lines = [head + " |", "|" + "---|" * (8 + len(faster))]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['bytes_to_board']:,} | {r['bytes_to_host']:,} | {r['rounds']} | "
            f"{r['serial_ms']:.2f} | {r['serial_images_per_s']:,.0f} | {r['core_ms']:.3f} | "
            f"{r['core_images_per_s']:,.0f} | " + " | ".join(f"{r[n]:.3f}" for n in faster) + " |"
        )
    return "\n".join(lines) + "\n"
