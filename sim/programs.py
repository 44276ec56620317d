"""Stimulus for the core benches: small, explicit programs built from systolic.hw.isa.

Deliberately simple (every tile loaded, one MATMUL per tile, nothing overlapped) and
separate from host/compile/, so the benches check the core without trusting the
compiler, and the compiler's own tests check it against the core.
"""

import numpy as np

from systolic.hw import isa
from systolic.hw.config import MAX_ROWS_PER_OP
from systolic.hw.isa import Opcode, Target

__all__ = ["Builder", "matmul_program", "parse_output", "reference_matmul"]


class Builder:
    """Accumulates program beats (``stream_bytes`` each, little-endian)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.beats = []

    def instr(self, op, **fields):
        self.word(isa.encode(op, **fields))

    def word(self, value):
        self.beats.append(int(value).to_bytes(self.cfg.stream_bytes, "little", signed=value < 0))

    def raw(self, data):
        self.beats.append(bytes(data).ljust(self.cfg.stream_bytes, b"\0"))

    def load(self, target, addr, rows):
        """LOAD with one beat a row of ``rows`` (bytes-like or ints)."""
        self.instr(Opcode.LOAD, target=target, addr=addr, count=len(rows))
        for row in rows:
            if isinstance(row, (int, np.integer)):
                self.word(int(row))
            else:
                self.raw(row)

    def array(self):
        return np.frombuffer(b"".join(self.beats), np.uint8).reshape(-1, self.cfg.stream_bytes)


def matmul_program(cfg, a, w, bias, requant=None, chunk=None):
    """Program for ``a @ w + bias``, then requantized (``requant``) or raw int32.

    Parameters
    ----------
    a : int8 [M, K]
    w : int8 [K, N]
    bias : int32 [N]
    requant : (mult, shift, zero_point, relu[, round_even]) arrays of length N, or None
        for raw output.
    chunk : int, optional
        Rows per MATMUL/POSTPROC (default: all of M, at most 1023).
    """
    R, C = cfg.rows, cfg.cols
    M, K = a.shape
    N = w.shape[1]
    kt, nt = -(-K // R), -(-N // C)
    ap = np.zeros((M, kt * R), np.int8)
    ap[:, :K] = a
    wp = np.zeros((kt * R, nt * C), np.int8)
    wp[:K, :N] = w
    bp = np.zeros(nt * C, np.int64)
    bp[:N] = bias
    b = Builder(cfg)
    rows = [
        wp[k * R + r, n * C : (n + 1) * C].tobytes()
        for k in range(kt)
        for n in range(nt)
        for r in range(R)
    ]
    b.load(Target.WEIGHT, 0, rows)
    b.load(Target.BIAS, 0, [int(x) & 0xFFFFFFFF for x in bp])
    if requant is not None:
        mult, shift, zp, relu, even = (np.resize(np.asarray(x), nt * C) for x in (*requant, 0)[:5])
        b.load(
            Target.SCALE,
            0,
            [
                isa.encode_scale(
                    int(mult[i]), int(shift[i]), int(zp[i]), bool(relu[i]), bool(even[i])
                )
                for i in range(nt * C)
            ],
        )
    b.load(
        Target.ACT, 0, [ap[i, k * R : (k + 1) * R].tobytes() for k in range(kt) for i in range(M)]
    )
    chunk = min(chunk or M, MAX_ROWS_PER_OP)
    for n in range(nt):
        for k in range(kt):
            for i0 in range(0, M, chunk):
                b.instr(
                    Opcode.MATMUL,
                    act_addr=k * M + i0,
                    weight_tile=k * nt + n,
                    acc_addr=n * M + i0,
                    m=min(chunk, M - i0),
                    accumulate=int(k > 0),
                )
    for n in range(nt):
        for i0 in range(0, M, chunk):
            b.instr(
                Opcode.POSTPROC,
                acc_addr=n * M + i0,
                m=min(chunk, M - i0),
                param_addr=n,
                to_stream=1,
                raw=int(requant is None),
            )
    b.instr(Opcode.END)
    return b.array()


def parse_output(cfg, beats, M, N, raw, chunk=None):
    """Split result beats into the ``[M, N]`` result and the status dict."""
    C = cfg.cols
    nt = -(-N // C)
    status_n = len(isa.STATUS_FIELDS)
    status = {
        name: int.from_bytes(
            bytes(beats[len(beats) - status_n + i][: isa.STATUS_WORD_BYTES]), "little"
        )
        for i, name in enumerate(isa.STATUS_FIELDS)
    }
    body = beats[: len(beats) - status_n]
    per_row = cfg.raw_beats if raw else 1
    expected = nt * M * per_row
    if len(body) != expected:
        return None, status
    if raw:
        rows = body.reshape(nt, M, per_row * cfg.stream_bytes)[:, :, : 4 * C]
        vals = rows.copy().view("<i4")
    else:
        vals = body.reshape(nt, M, cfg.stream_bytes)[:, :, :C].view(np.int8)
    out = np.concatenate(list(vals), axis=1)[:, :N]
    return out, status


def reference_matmul(a, w, bias, requant=None, act_min=-128, act_max=127):
    """numpy golden model of exactly what the program computes (int64 arithmetic)."""
    acc = a.astype(np.int64) @ w.astype(np.int64) + np.asarray(bias, np.int64)
    acc = (acc + 2**31) % 2**32 - 2**31
    if requant is None:
        return acc.astype(np.int32)
    mult, shift, zp, relu, even = (
        np.broadcast_to(np.asarray(x, np.int64), acc.shape[1:]) for x in (*requant, 0)[:5]
    )
    # Python integers: acc * mult + half can pass 2**63 when mult uses all 32 bits
    p = acc.astype(object) * mult.astype(object)
    half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    r = ((p + half.astype(object)) >> shift.astype(object)).astype(np.int64)
    # round half to even: a tie (p + half an exact multiple of 2**shift) that rounded up
    # to an odd value goes back down by one
    exact = ((p + half.astype(object)) % (1 << shift.astype(object))) == 0
    r = r - ((even == 1) & (shift > 0) & exact.astype(bool) & (r % 2 == 1))
    y = r + zp
    lo = np.where(relu.astype(bool), np.maximum(zp, act_min), act_min)
    return np.clip(np.maximum(y, lo), act_min, act_max).astype(np.int8)
