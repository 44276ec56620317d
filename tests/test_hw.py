"""Fast tests of the hardware description: configuration, ISA, and amaranth.sim units."""

import json
import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import isa
from hw.config import CoreConfig
from hw.pe import ProcessingElement
from hw.postproc import PostProcessor
from sim.programs import reference_matmul


# -- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("rows", 40, "rows must be between 2 and 16, not 40"),
        ("cols", 1, "cols must be between 2 and 16, not 1"),
        ("queue_depth", 1, "queue_depth must be between 2 and 64, not 1"),
    ],
)
def test_config_rejects_out_of_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        CoreConfig(**{field: value})


@pytest.mark.parametrize("field", ["act_bits", "weight_bits", "acc_bits"])
def test_config_widths_are_fixed(field):
    """Operands are int8 and accumulators int32 throughout; no width can be asked for
    that the hardware and the host would not honour."""
    with pytest.raises(ValueError, match=f"unknown configuration field\\(s\\): {field}"):
        CoreConfig.from_dict({field: 4})
    with pytest.raises(TypeError, match=field):
        CoreConfig(**{field: 4})
    assert getattr(CoreConfig(), field) == (32 if field == "acc_bits" else 8)


def test_config_rejects_wrong_type():
    with pytest.raises(TypeError, match=r"deep_pipeline must be true or false, not 1"):
        CoreConfig(deep_pipeline=1)
    with pytest.raises(TypeError, match=r"rows must be an integer, not '8'"):
        CoreConfig(rows="8")


def test_config_rejects_zero_buffer():
    with pytest.raises(ValueError, match="weight_kib must be between 1 and 4096, not 0"):
        CoreConfig(rows=16, cols=16, weight_kib=0)


def test_config_json_round_trip_and_hash():
    cfg = CoreConfig(rows=4, cols=8, act_kib=32)
    again = CoreConfig.from_json(cfg.to_json())
    assert again == cfg and again.hash == cfg.hash
    assert cfg.tag.startswith("r4c8-") and cfg.hash != CoreConfig().hash
    with pytest.raises(ValueError, match="unknown configuration field"):
        CoreConfig.from_dict({**cfg.to_dict(), "lanes": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        CoreConfig.from_json("{rows: 4")


def test_config_derived_values():
    cfg = CoreConfig(rows=4, cols=8)
    assert cfg.act_depth == 128 * 1024 // 4
    assert cfg.weight_depth == 128 * 1024 // 32
    assert cfg.stream_bytes == 8 and CoreConfig(rows=16, cols=2).stream_bytes == 16
    assert cfg.groups == 2 and CoreConfig(rows=8, cols=4).groups == 1
    assert cfg.raw_beats == 4


# -- instruction set ----------------------------------------------------------------------
def test_isa_round_trip():
    word = isa.encode(isa.Opcode.MATMUL, act_addr=5, weight_tile=3, acc_addr=7, m=64, accumulate=1)
    op, fields = isa.decode(word)
    assert op is isa.Opcode.MATMUL
    assert fields == dict(act_addr=5, weight_tile=3, acc_addr=7, m=64, accumulate=1)
    assert word < 1 << isa.INSTR_BITS


def test_isa_rejects_bad_fields():
    with pytest.raises(
        isa.InstructionError, match="MATMUL field m must be between 0 and 1023, not 4096"
    ):
        isa.encode(isa.Opcode.MATMUL, m=4096)
    with pytest.raises(isa.InstructionError, match="LOAD has no field"):
        isa.encode(isa.Opcode.LOAD, rows=1)
    with pytest.raises(isa.InstructionError, match="unknown opcode 15"):
        isa.decode(0xF)


# -- amaranth.sim units -------------------------------------------------------------------


def test_pe_multiply_accumulate():
    cfg = CoreConfig(rows=4, cols=4)
    dut = ProcessingElement(cfg)
    rng = np.random.default_rng(1)
    stim = [
        (int(a), int(w), int(p))
        for a, w, p in zip(
            rng.integers(-128, 128, 50), rng.integers(-128, 128, 50), rng.integers(-9999, 9999, 50)
        )
    ]
    stim[3] = (-128, -128, 0)

    async def bench(ctx):
        for t, (a, w, p) in enumerate(stim):
            ctx.set(dut.act_in, a)
            ctx.set(dut.weight, w)
            ctx.set(dut.psum_in, p)
            if t >= 2:
                want = stim[t - 1][2] + stim[t - 2][0] * stim[t - 2][1]
                assert ctx.get(dut.psum_out) == want
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("deep", [True, False], ids=["deep", "shallow"])
def test_postproc_matches_reference(deep):
    cfg = CoreConfig(rows=2, cols=3, deep_pipeline=deep)
    N = cfg.postproc_stages
    dut = PostProcessor(cfg, 1)
    rng = np.random.default_rng(2)
    rows = []
    for _ in range(30):  # anywhere in range: mostly saturating
        rows.append(
            (
                rng.integers(-(1 << 31), 1 << 31, 3),
                rng.integers(-(1 << 20), 1 << 20, 3),
                (
                    rng.integers(0, 1 << 32, 3),
                    rng.integers(0, 64, 3),
                    rng.integers(-128, 128, 3),
                    rng.integers(0, 2, 3),
                ),
            )
        )
    for _ in range(30):  # typical layers: results in and near the int8 range
        rows.append(
            (
                rng.integers(-(1 << 14), 1 << 14, 3),
                rng.integers(-(1 << 10), 1 << 10, 3),
                (
                    rng.integers(1 << 29, 1 << 31, 3),
                    rng.integers(30, 42, 3),
                    rng.integers(-128, 128, 3),
                    rng.integers(0, 2, 3),
                ),
            )
        )
    for _ in range(60):  # ties: small products, small shifts, both rounding modes
        rows.append(
            (
                rng.integers(-600, 600, 3),
                rng.integers(-4, 4, 3),
                (
                    rng.integers(1, 4, 3),
                    rng.integers(1, 4, 3),
                    rng.integers(-8, 8, 3),
                    rng.integers(0, 2, 3),
                    rng.integers(0, 2, 3),
                ),
            )
        )
    edge = [-(1 << 31), (1 << 31) - 1, -1]
    for mult, shift in (
        (0xFFFFFFFF, 0),
        (0xFFFFFFFF, 63),
        (0xFFFFFFFF, 62),
        (1, 0),
        (1, 1),
        (3, 1),
        (0x80000000, 32),
    ):
        for even in (0, 1):
            rows.append(
                (
                    np.array(edge),
                    np.zeros(3, np.int64),
                    (
                        np.full(3, mult),
                        np.full(3, shift),
                        np.array([0, -128, 127]),
                        np.array([0, 1, 0]),
                        np.full(3, even),
                    ),
                )
            )

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for t in range(len(rows) + N):
            if t < len(rows):
                acc, bias, (mult, shift, zp, relu, *even) = rows[t]
                even = even[0] if even else np.zeros(3, np.int64)
                ctx.set(dut.acc, [int(x) for x in acc])
                ctx.set(dut.bias, [int(x) for x in bias])
                ctx.set(
                    dut.scale,
                    [
                        {
                            "mult": int(mult[c]),
                            "shift": int(shift[c]),
                            "zero_point": int(zp[c]),
                            "relu": int(relu[c]),
                            "round_even": int(even[c]),
                        }
                        for c in range(3)
                    ],
                )
            if t >= N:
                acc, bias, req = rows[t - N]
                raw = (acc + bias + (1 << 31)) % (1 << 32) - (1 << 31)
                want = reference_matmul(
                    np.zeros((1, 1), np.int8), np.zeros((1, 3), np.int8), raw, req
                )[0]
                got = [ctx.get(dut.y[c]) for c in range(3)]
                assert got == want.tolist()
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# -- generation ---------------------------------------------------------------------------
def test_generate_writes_verilog_and_config(tmp_path):
    out = tmp_path / "rtl"
    res = subprocess.run(
        [sys.executable, "-m", "hw.generate", "--rows", "2", "--cols", "3", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "module core" in (out / "core.v").read_text()
    assert json.loads((out / "core.json").read_text())["cols"] == 3


def test_generate_rejects_bad_size(tmp_path):
    out = tmp_path / "rtl"
    res = subprocess.run(
        [sys.executable, "-m", "hw.generate", "--rows", "40", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0
    assert res.stderr.strip() == "error: rows must be between 2 and 16, not 40"
    assert not out.exists()
