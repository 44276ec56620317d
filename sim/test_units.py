"""Unit benches: the PE, the array, post-processing and the ECP5's DSP multiplies,
randomized against numpy or Python's integers.

The runner builds each component on its own (``systolic.sim.runner.run_unit``) and runs the
tests whose names start with that component's name.
"""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from systolic.sim.programs import reference_matmul
from systolic.sim.runner import MULTIPLY_MODES, config_from_env


def _pack(values, bits):
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return out


def _unpack(value, bits, n, signed=True):
    value = int(value)
    out = []
    for i in range(n):
        v = (value >> (i * bits)) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return np.array(out, np.int64)


async def _start(dut):
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    dut._log.info("seed %d", cocotb.RANDOM_SEED)
    return rng


@cocotb.test()
async def pe_random(dut):
    """psum_out(t+L) == psum_in(t+L-1) + act_in(t) * weight(t), L = pe_latency (2, or 3
    with the deep pipeline), incl. -128 x -128."""
    lat = config_from_env().pe_latency
    rng = await _start(dut)
    psum_bits = len(dut.psum_in)
    hist = []
    for t in range(400):
        a, w = (int(x) for x in rng.integers(-128, 128, 2))
        if t % 7 == 0:
            a, w = -128, -128
        p = int(rng.integers(-(1 << (psum_bits - 2)), 1 << (psum_bits - 2)))
        await FallingEdge(dut.clk)
        dut.act_in.value = a & 0xFF
        dut.weight.value = w & 0xFF
        dut.psum_in.value = p & ((1 << psum_bits) - 1)
        hist.append((a, w, p))
        if t >= lat:
            got = dut.psum_out.value.to_signed()
            a2, w2, _ = hist[t - lat]
            want = hist[t - 1][2] + a2 * w2
            assert got == want, f"cycle {t}: psum_out {got}, expected {want}"
            assert dut.act_out.value.to_signed() == hist[t - 1][0]


@cocotb.test()
async def array_tile_per_cycle(dut):
    """Each word is multiplied by its own tile although tiles change every cycle."""
    cfg = config_from_env()
    R, C = cfg.rows, cfg.cols
    rng = await _start(dut)
    psum_bits = len(dut.result) // C
    tiles = rng.integers(-128, 128, (5, R, C), dtype=np.int8)
    tiles[0] = -128
    n = 200
    words = rng.integers(-128, 128, (n, R), dtype=np.int8)
    words[::9] = -128
    choice = rng.integers(0, len(tiles), n)
    delay = cfg.array_output_delay
    for t in range(n + delay + 1):
        await FallingEdge(dut.clk)
        if t < n:
            dut.act.value = _pack(words[t], 8)
        weights = []
        for r in range(R):
            for c in range(C):
                src = t - r - c
                weights.append(tiles[choice[src]][r, c] if 0 <= src < n else 0)
        dut.weights.value = _pack(weights, 8)
        src = t - delay
        if 0 <= src < n:
            got = _unpack(dut.result.value, psum_bits, C)
            want = reference_matmul(words[src][None], tiles[choice[src]], np.zeros(C))[0]
            np.testing.assert_array_equal(got, want, err_msg=f"word {src}")


@cocotb.test()
async def postproc_random(dut):
    """Bias, rounding shift (half up and half to even), zero point, ReLU, saturation;
    with pipeline stalls."""
    cfg = config_from_env()
    C = cfg.cols
    rng = await _start(dut)
    from systolic.hw import isa

    N = cfg.postproc_stages

    inputs = []
    for t in range(300):
        if t % 3 == 2:  # ties: small products and shifts (both rounding modes below)
            acc = rng.integers(-600, 600, C)
            bias = rng.integers(-4, 4, C)
            mult = rng.integers(1, 4, C)
            shift = rng.integers(1, 4, C)
        elif t % 2:  # anywhere in range
            acc = rng.integers(-(1 << 31), 1 << 31, C)
            acc[0] = -(1 << 31)
            bias = rng.integers(-(1 << 31), 1 << 31, C)
            mult = rng.integers(0, 1 << 32, C)
            shift = rng.integers(0, 64, C)
        else:  # typical layers: results in and near the int8 range
            acc = rng.integers(-(1 << 14), 1 << 14, C)
            bias = rng.integers(-(1 << 10), 1 << 10, C)
            mult = rng.integers(1 << 29, 1 << 31, C)
            shift = rng.integers(30, 42, C)
        shift[1 % C] = 0
        zp = rng.integers(-128, 128, C)
        relu = rng.integers(0, 2, C)
        even = rng.integers(0, 2, C)
        en = int(rng.random() < 0.7)
        await FallingEdge(dut.clk)
        dut.en.value = en
        dut.i_valid.value = 1
        dut.acc.value = _pack(acc, cfg.acc_bits)
        dut.bias.value = _pack(bias, 32)
        dut.scale.value = _pack(
            [
                isa.encode_scale(
                    int(mult[c]), int(shift[c]), int(zp[c]), bool(relu[c]), bool(even[c])
                )
                for c in range(C)
            ],
            isa.SCALE_WORD.size,
        )
        # The output now shows the row that entered N enabled cycles ago.
        if len(inputs) >= N:
            a, b, req = inputs[-N]
            raw = ((a + b + (1 << 31)) % (1 << 32)) - (1 << 31)
            want = reference_matmul(np.zeros((1, 1), np.int8), np.zeros((1, C), np.int8), raw, req)[
                0
            ]
            got = _unpack(dut.y.value, 8, C)
            np.testing.assert_array_equal(got, want, err_msg=f"cycle {t}")
            np.testing.assert_array_equal(_unpack(dut.raw.value, 32, C), raw)
        if en:
            inputs.append((acc, bias, (mult, shift, zp, relu, even)))


@cocotb.test()
async def multiply_ecp5_random(dut):
    """Both modes of RegisteredMultiply as the ECP5 builds them (a MULT18X18D, in the
    model sim/hdl/mult18x18d.v): ``p_two`` the product of the operands taken two enabled
    cycles before, ``p_one`` one enabled cycle before (each operand's low bits), and a
    low ``en`` holds every register; full-width operands included."""
    rng = await _start(dut)
    taken, checked = [], 0
    for t in range(600):
        await FallingEdge(dut.clk)
        for k, (a_bits, b_bits, regs) in MULTIPLY_MODES.items():
            back = 2 if regs else 1
            if len(taken) >= back:
                a, b = taken[-back]
                want = (a % (1 << a_bits)) * (b % (1 << b_bits))
                got = int(getattr(dut, f"p_{k}").value)
                assert got == want, f"cycle {t}: p_{k} {got}, expected {want}"
                checked += 1
        full = (1 << len(dut.a)) - 1
        a, b = (full, full) if t % 11 == 0 else (int(x) for x in rng.integers(0, full + 1, 2))
        en = int(rng.random() < 0.7)
        dut.a.value, dut.b.value, dut.en.value = a, b, en
        if en:
            taken.append((a, b))
    assert checked > 600, f"only {checked} products checked"
