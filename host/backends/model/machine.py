"""The ``model`` backend: a numpy interpreter of the program stream.

It decodes the same beats the core receives (``cycles.walk`` does the front
end's checks), executes each instruction with numpy integer arithmetic, produces the
same result beats byte for byte, and takes the status packet's counters from the
exact cycle model. It shares no code with the hardware description.

LOOP patterns (one per :class:`~systolic.hw.isa.LoopTarget`, linear at the start of each
program) turn a MATMUL's activation reads and a POSTPROC's hidden-buffer writes into
one index array an instruction; rows run in order, so where a pattern sends two rows
of one POSTPROC to the same word the later one wins (with ``pool``: the maximum of all).
"""

import time

import numpy as np

from systolic.hw import isa
from systolic.hw.isa import LoopTarget, Opcode, Target

from ...compile.checks import LINEAR, loop_pattern
from ...compile.program import beat_words, word_beats
from ..base import Result
from .cycles import walk

__all__ = ["ModelBackend", "Machine"]

_SCALE_FIELDS = {name: (field.offset, field.width) for name, field in isa.SCALE_WORD}


def _wrap(x, bits=32):
    return ((x + (1 << (bits - 1))) & ((1 << bits) - 1)) - (1 << (bits - 1))


def _round_shift(p, shift, even):
    """``p / 2**shift`` rounded to the nearest integer, exact over int64.

    ``p`` is a product of an int32 and an unsigned 32-bit multiplier, so ``|p| < 2**63``;
    adding the rounding half first could overflow, so the floor of ``p / 2**(shift-1)``
    is taken before the half is added. A tie (remainder exactly one half) goes up, or to
    the even neighbour where ``even`` is set.
    """
    s1 = np.maximum(shift - 1, 0)
    q = p >> s1  # floor(p / 2**(shift-1))
    below = (p & ((np.int64(1) << s1) - 1)) == 0  # nothing under the half bit
    tie = (q & 1 == 1) & below
    up = np.where((even == 1) & tie & ((q >> 1) & 1 == 0), 0, 1)
    return np.where(shift > 0, (q + up) >> 1, p)


def _rows(base, m, pattern):
    """The buffer rows of ``m`` instruction rows from ``base``: a slice when linear, else
    ``base + (i mod inner) * inner_stride + (i div inner) * outer_stride``."""
    if pattern is None:
        return slice(base, base + m)
    inner, _, inner_stride, outer_stride = pattern
    i = np.arange(m)
    return base + (i % inner) * inner_stride + (i // inner) * outer_stride


def _last_of_each(rows):
    """Positions of the last occurrence of each distinct value of ``rows``, in order."""
    _, first_of_reversed = np.unique(rows[::-1], return_index=True)
    return np.sort(len(rows) - 1 - first_of_reversed)


class Machine:
    """Buffers and execution of one core configuration."""

    def __init__(self, cfg):
        self.cfg = cfg
        R, C = cfg.rows, cfg.cols
        self.act = np.zeros((cfg.act_space, R), np.int64)  # input, then hidden buffer
        self.weights = np.zeros((cfg.weight_depth * R, C), np.int64)
        self.acc = np.zeros((cfg.acc_depth, C), np.int64)
        self.bias = np.zeros(cfg.param_depth * C, np.int64)
        self.scale = {k: np.zeros(cfg.param_depth * C, np.int64) for k in _SCALE_FIELDS}
        self.out = []
        self.patterns = dict(LINEAR)

    def execute(self, beats, op, f, pos):
        cfg = self.cfg
        R, C, sb = cfg.rows, cfg.cols, cfg.stream_bytes
        if op is Opcode.LOAD:
            data = beats[pos + 1 : pos + 1 + f["count"]]  # fewer if the stream ends early
            a, n = f["addr"], len(data)
            t = Target(f["target"])
            if t is Target.ACT:
                self.act[a : a + n] = data[:, :R].view(np.int8)
            elif t is Target.WEIGHT:
                self.weights[a * R : a * R + n] = data[:, :C].view(np.int8)
            else:
                words = beat_words(data).astype(np.int64)
                lo = a * C
                if t is Target.BIAS:
                    self.bias[lo : lo + n] = _wrap(words & 0xFFFFFFFF)
                else:
                    for name, (off, width) in _SCALE_FIELDS.items():
                        v = (words >> off) & ((1 << width) - 1)
                        if name == "zero_point":
                            v = _wrap(v, width)
                        self.scale[name][lo : lo + n] = v
        elif op is Opcode.MATMUL:
            m = f["m"]
            x = self.act[_rows(f["act_addr"], m, self.patterns[LoopTarget.READ])]
            t = f["weight_tile"]
            acc = self.acc[f["acc_addr"] : f["acc_addr"] + m]
            if f.get("tile_step", 0):  # row i against tile t + i
                w = self.weights[t * R : (t + m) * R].reshape(m, R, -1)
                res = np.einsum("mr,mrc->mc", x, w)
            else:
                res = x @ self.weights[t * R : (t + 1) * R]
            res = res + (acc if f["accumulate"] else 0)
            self.acc[f["acc_addr"] : f["acc_addr"] + m] = _wrap(res, cfg.acc_bits)
        elif op is Opcode.POSTPROC:
            m, p = f["m"], f["param_addr"]
            lanes = slice(p * C, (p + 1) * C)
            a = _wrap(self.acc[f["acc_addr"] : f["acc_addr"] + m] + self.bias[lanes])
            if f["raw"]:
                raw = np.zeros((m, cfg.raw_beats * sb), np.uint8)
                raw[:, : 4 * C] = a.astype("<i4").view(np.uint8)
                self.out.append(raw.reshape(m * cfg.raw_beats, sb))
                return
            mult, shift = self.scale["mult"][lanes], self.scale["shift"][lanes]
            zp, relu = self.scale["zero_point"][lanes], self.scale["relu"][lanes]
            y = _round_shift(a * mult, shift, self.scale["round_even"][lanes]) + zp
            lo = np.where(relu == 1, zp, cfg.act_min)
            y = np.clip(np.maximum(y, lo), cfg.act_min, cfg.act_max)
            if f["to_stream"]:
                beat = np.zeros((m, sb), np.uint8)
                beat[:, :C] = y.astype(np.int8).view(np.uint8)
                self.out.append(beat)
            else:
                g = f["group"]
                word = np.zeros((m, R), np.int64)
                lanes_g = y[:, g * R : (g + 1) * R]
                word[:, : lanes_g.shape[1]] = lanes_g
                rows = _rows(f["dst_addr"], m, self.patterns[LoopTarget.WRITE])
                if f["pool"]:
                    np.maximum.at(self.act, rows, word)  # row by row: repeats pool too
                elif isinstance(rows, slice):
                    self.act[rows] = word
                else:
                    keep = _last_of_each(rows)
                    self.act[rows[keep]] = word[keep]
        elif op is Opcode.LOOP:
            self.patterns[LoopTarget(f["target"])] = loop_pattern(f)

    def run(self, beats: np.ndarray) -> tuple[np.ndarray, dict]:
        """Run a whole program; returns ``(result beats, status dict)``."""
        self.out = []
        self.patterns = dict(LINEAR)
        tl, err = walk(self.cfg, beats, lambda op, f, pos: self.execute(beats, op, f, pos))
        status = tl.status(err)
        mask = (1 << isa.STATUS_WORD_BITS) - 1
        self.out.append(
            word_beats([status[name] & mask for name in isa.STATUS_FIELDS], self.cfg.stream_bytes)
        )
        return np.concatenate(self.out), status


class ModelBackend:
    """Bit-accurate, cycle-predicting numpy backend."""

    name = "model"
    options = ()

    def __init__(self, config):
        self.config = config

    def prepare(self) -> None:
        pass

    def stream(self, beats: np.ndarray) -> tuple[np.ndarray, dict]:
        start = time.perf_counter()
        out, _ = Machine(self.config).run(np.asarray(beats, np.uint8))
        return out, {
            "sim_cycles": 0,
            "sim_seconds": 0.0,
            "wall_seconds": time.perf_counter() - start,
        }

    def run(self, program, inputs: np.ndarray) -> Result:
        program.check_config(self.config)
        start = time.perf_counter()
        beats = program.beats(inputs)
        out, status = Machine(self.config).run(beats)
        outputs, status = program.parse_output(out, len(inputs))
        return Result(
            outputs=outputs,
            status=status,
            cycles=status["cycles"],
            predicted_cycles=status["cycles"],
            wall_seconds=time.perf_counter() - start,
            out_beats=out,
        )
