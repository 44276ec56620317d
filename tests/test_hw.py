"""Fast tests of the hardware description: configuration, ISA, amaranth.sim units, and
the whole core in amaranth.sim with address patterns and pooling."""

import json
import subprocess
import sys

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from systolic.hw import isa
from systolic.hw.config import CoreConfig
from systolic.hw.core import Core
from systolic.hw.dsp import RegisteredMultiply, SynthTarget
from systolic.hw.pe import ProcessingElement
from systolic.hw.postproc import PostProcessor
from systolic.sim.programs import Builder, reference_matmul


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
    want = dict(act_addr=5, weight_tile=3, acc_addr=7, m=64, accumulate=1, tile_step=1)
    word = isa.encode(isa.Opcode.MATMUL, **want)
    op, fields = isa.decode(word)
    assert op is isa.Opcode.MATMUL
    assert fields == want
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


@pytest.mark.parametrize("split", [False, True], ids=["product", "split"])
@pytest.mark.parametrize("deep", [True, False], ids=["deep", "shallow"])
def test_pe_multiply_accumulate(deep, split):
    cfg = CoreConfig(rows=4, cols=4, deep_pipeline=deep, split_product=split)
    dut = ProcessingElement(cfg)
    lat = cfg.pe_latency
    assert lat == (3 if deep else 2)
    rng = np.random.default_rng(1)
    n = 300
    stim = [
        (int(a), int(w), int(p))
        for a, w, p in zip(
            rng.integers(-128, 128, n), rng.integers(-128, 128, n), rng.integers(-9999, 9999, n)
        )
    ]
    # the extremes, and weights whose low half is 8 or more (the split's unsigned half)
    for i, (a, w) in enumerate([(-128, -128), (-128, 127), (127, -128), (-1, -1), (-128, 15)]):
        stim[3 + 2 * i] = (a, w, 0)

    async def bench(ctx):
        for t, (a, w, p) in enumerate(stim):
            ctx.set(dut.act_in, a)
            ctx.set(dut.weight, w)
            ctx.set(dut.psum_in, p)
            if t >= lat:
                # psum_in of one cycle ago plus the product of the inputs of lat cycles
                # ago: psum_in is due lat - 1 cycles after its activation
                want = stim[t - 1][2] + stim[t - lat][0] * stim[t - lat][1]
                assert ctx.get(dut.psum_out) == want
            if t >= 1:
                assert ctx.get(dut.act_out) == stim[t - 1][0]
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
    # ties and near ties at every byte of p below the half bit h: p = 2**h (a tie) and
    # 2**h + 2**(h - 2), positive and negative (whether the bits below the half bit are
    # zero is decided a byte at a time)
    for h in range(5, 62, 8):
        mult, unit = (1, 1 << h) if h < 31 else (1 << (h - 30), 1 << 30)
        for even in (0, 1):
            rows.append(
                (
                    np.array([unit, unit + unit // 4, -(unit + unit // 4)]),
                    np.zeros(3, np.int64),
                    (
                        np.full(3, mult),
                        np.full(3, h + 1),
                        np.zeros(3),
                        np.zeros(3),
                        np.full(3, even),
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


@pytest.mark.parametrize("input_registers", [True, False])
def test_registered_multiply_enabled_cycles(input_registers):
    """The product of the operands taken two enabled cycles earlier (one without the
    input registers); a low ``en`` holds every stage (post-processing's stall, the front
    end's staging register)."""
    dut = RegisteredMultiply(16, 16, input_registers=input_registers)
    back = 2 if input_registers else 1
    rng = np.random.default_rng(5)
    taken, seen = [], []

    async def bench(ctx):
        for _ in range(200):
            a, b, en = int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16)), rng.random()
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, int(en < 0.7))
            if len(taken) >= back:
                x, y = taken[-back]
                assert ctx.get(dut.p) == x * y
                seen.append(x * y)
            await ctx.tick()
            if en < 0.7:
                taken.append((a, b))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) > 100


def test_registered_multiply_is_a_dsp_block_with_its_registers_on_the_ecp5():
    """On the ECP5 one MULT18X18D with its input and output registers on CLK0 and ``en``
    as CE0 (the ECP5 post-processing bench simulates it: tests/test_sim.py); elsewhere no
    primitive."""
    ecp5 = verilog.convert(RegisteredMultiply(16, 16), emit_src=False, platform=SynthTarget("ecp5"))
    assert ecp5.count("MULT18X18D") == 1
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        assert f'.REG_{reg}_CLK("CLK0")' in ecp5 and f'.REG_{reg}_CE("CE0")' in ecp5
    assert ".CE0(en)" in ecp5 and ".RST0(1'h0)" in ecp5
    one = verilog.convert(
        RegisteredMultiply(10, 16, input_registers=False),
        emit_src=False,
        platform=SynthTarget("ecp5"),
    )
    assert '.REG_INPUTA_CLK("NONE")' in one and '.REG_INPUTB_CLK("NONE")' in one
    assert '.REG_OUTPUT_CLK("CLK0")' in one and ".CE0(en)" in one
    for platform in (None, SynthTarget("ice40")):
        text = verilog.convert(RegisteredMultiply(16, 16), emit_src=False, platform=platform)
        assert "MULT18X18D" not in text
    with pytest.raises(ValueError, match="operands of 19 and 16 bits: at most 18 each"):
        RegisteredMultiply(19, 16)


# -- generation ---------------------------------------------------------------------------
def test_generate_writes_verilog_and_config(tmp_path):
    out = tmp_path / "rtl"
    res = subprocess.run(
        [sys.executable, "-m", "systolic.hw.generate", "--size", "2x3", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "module core" in (out / "core.v").read_text()
    assert json.loads((out / "core.json").read_text())["cols"] == 3


def test_generate_rejects_bad_size(tmp_path):
    out = tmp_path / "rtl"
    res = subprocess.run(
        [sys.executable, "-m", "systolic.hw.generate", "--size", "40x8", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0
    assert res.stderr.strip() == "error: rows must be between 2 and 16, not 40"
    assert not out.exists()


# -- the whole core in amaranth.sim: address patterns and pooling --------------------------
@pytest.mark.parametrize("deep", [True, False], ids=["deep", "shallow"])
def test_core_reads_and_writes_through_patterns_and_pools(deep):
    """A 2x2 core with an identity weight tile (each result row is the activation word it
    read): MATMUL reads under a READ pattern, POSTPROC writes under a WRITE pattern,
    pooled POSTPROCs (two rows into each word, back to back), then the hidden words
    read back linearly to the stream. The next program starts linear."""
    cfg = CoreConfig(
        rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, deep_pipeline=deep
    )
    H, Op = cfg.act_depth, isa.Opcode
    rng = np.random.default_rng(4)
    x = rng.integers(-100, 101, (12, 2))
    # the rows pooled below: each word's maximum takes its lanes from different rows
    x[[1, 2, 5, 6, 9, 10]] = [[50, -60], [-70, 40], [10, 20], [30, -10], [-5, -6], [-7, 5]]
    b = Builder(cfg)
    b.load(isa.Target.WEIGHT, 0, [bytes([1, 0]), bytes([0, 1])])
    b.load(isa.Target.BIAS, 0, [0, 0])
    b.load(isa.Target.SCALE, 0, [isa.encode_scale(1, 0, 0, False)] * 2)
    b.load(isa.Target.ACT, 0, [row.astype(np.int8).tobytes() for row in x])

    def loop(target, inner, outer, inner_stride, outer_stride):
        b.instr(
            Op.LOOP,
            target=target,
            inner=inner,
            outer=outer,
            inner_stride=inner_stride,
            outer_stride=outer_stride,
        )

    def rows(base, inner, outer, inner_stride, outer_stride):
        return [
            base + (i % inner) * inner_stride + (i // inner) * outer_stride
            for i in range(inner * outer)
        ]

    hidden = {}
    # acc 0..5 = x[1, 2, 5, 6, 9, 10]
    loop(isa.LoopTarget.READ, 2, 3, 1, 4)
    b.instr(Op.MATMUL, act_addr=1, weight_tile=0, acc_addr=0, m=6)
    acc = [x[a] for a in rows(1, 2, 3, 1, 4)]
    # hidden words 0, 2, 4, 1, 3, 5
    loop(isa.LoopTarget.WRITE, 3, 2, 2, 1)
    b.instr(Op.POSTPROC, acc_addr=0, m=6, param_addr=0, dst_addr=H)
    for i, w in enumerate(rows(0, 3, 2, 2, 1)):
        hidden[w] = acc[i]
    # words 8..10 written, then acc rows 0..5 pooled two by two into them
    loop(isa.LoopTarget.WRITE, 0, 0, 0, 0)
    b.instr(Op.POSTPROC, acc_addr=3, m=3, param_addr=0, dst_addr=H + 8)
    for i in range(3):
        hidden[8 + i] = acc[3 + i]
    loop(isa.LoopTarget.WRITE, 2, 3, 0, 1)
    b.instr(Op.POSTPROC, acc_addr=0, m=6, param_addr=0, dst_addr=H + 8, pool=1)
    for i, w in enumerate(rows(8, 2, 3, 0, 1)):
        hidden[w] = np.maximum(hidden[w], acc[i])
    # read back: a READ pattern over the hidden words 0..5 and 8..10, to the stream
    loop(isa.LoopTarget.READ, 3, 3, 1, 3)  # 0 1 2, 3 4 5, 6 7 8 ...
    b.instr(Op.MATMUL, act_addr=H + 2, weight_tile=0, acc_addr=6, m=9)  # 2..10
    b.instr(Op.POSTPROC, acc_addr=6, m=9, param_addr=0, to_stream=1)
    b.instr(Op.END)
    first = b.array()
    want = [hidden.get(w, np.zeros(2)) for w in range(2, 11)]
    # the next program: linear again (a READ pattern would make m=3 BAD_LOOP)
    b = Builder(cfg)
    b.instr(Op.MATMUL, act_addr=0, weight_tile=0, acc_addr=0, m=3)
    b.instr(Op.POSTPROC, acc_addr=0, m=3, param_addr=0, to_stream=1)
    b.instr(Op.END)
    second = b.array()
    want += [x[0], x[1], x[2]]

    out = _run_core(cfg, [first, second], cycles=3000)
    status_n = len(isa.STATUS_FIELDS)
    assert len(out) == 9 + status_n + 3 + status_n
    assert out[9] == 0 and out[9 + status_n + 3] == 0  # no error in either program
    results = out[:9] + out[9 + status_n : 9 + status_n + 3]
    got = [[((v >> (8 * c) & 0xFF) ^ 0x80) - 0x80 for c in range(2)] for v in results]
    assert got == [[int(v) for v in row] for row in want]


@pytest.mark.parametrize("deep", [True, False], ids=["deep", "shallow"])
def test_core_sees_parameters_loaded_just_before(deep):
    """A POSTPROC taken in the cycle after a LOAD's last bias (or scale) beat, with the
    engine idle, reads the new parameters: the parameter writes (two register stages)
    land before the POSTPROC's first parameter read, with no cycle to spare (a third
    stage fails here). The values loaded before differ in every lane, so a read that
    comes too early gives other rows."""
    cfg = CoreConfig(
        rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, deep_pipeline=deep
    )
    Op, T = isa.Opcode, isa.Target
    x = np.array([[3, -4], [10, 20]])
    b = Builder(cfg)
    b.load(T.WEIGHT, 0, [bytes([1, 0]), bytes([0, 1])])  # identity: acc row i = x[i]
    b.load(T.ACT, 0, [row.astype(np.int8).tobytes() for row in x])
    b.load(T.SCALE, 0, [isa.encode_scale(1, 0, 0, False)] * 2)
    b.load(T.BIAS, 0, [1, 2])
    b.instr(Op.MATMUL, act_addr=0, weight_tile=0, acc_addr=0, m=2)
    b.instr(Op.SYNC)
    b.load(T.BIAS, 0, [50, -60])
    b.instr(Op.POSTPROC, acc_addr=0, m=2, param_addr=0, to_stream=1)  # y = x + bias
    b.instr(Op.SYNC)
    b.load(T.SCALE, 0, [isa.encode_scale(1, 0, 0, False), isa.encode_scale(3, 0, 0, False)])
    b.instr(Op.POSTPROC, acc_addr=0, m=2, param_addr=0, to_stream=1)  # lane 1 times 3
    b.instr(Op.END)
    bias, mult = np.array([50, -60]), np.array([1, 3])
    want = np.vstack([x + bias, (x + bias) * mult]).clip(-128, 127)

    out = _run_core(cfg, [b.array()], cycles=600)
    assert len(out) == 4 + len(isa.STATUS_FIELDS) and out[4] == 0  # no error
    got = [[((v >> (8 * c) & 0xFF) ^ 0x80) - 0x80 for c in range(2)] for v in out[:4]]
    assert got == want.tolist()


def _run_core(cfg, programs, cycles):
    """The stream words a :class:`Core` sends for ``programs`` (beat arrays), sent one
    after another with the result stream always ready, within ``cycles`` cycles."""
    dut = Core(cfg)
    out = []

    async def feed(ctx):
        for program in programs:
            for i, beat in enumerate(program):
                ctx.set(dut.s_axis_tdata, int.from_bytes(bytes(beat), "little"))
                ctx.set(dut.s_axis_tlast, i == len(program) - 1)
                ctx.set(dut.s_axis_tvalid, 1)
                await ctx.tick().until(dut.s_axis_tready)
            ctx.set(dut.s_axis_tvalid, 0)

    async def sink(ctx):
        ctx.set(dut.m_axis_tready, 1)
        packets = 0
        while packets < len(programs):
            _, _, valid, data, last = await ctx.tick().sample(
                dut.m_axis_tvalid, dut.m_axis_tdata, dut.m_axis_tlast
            )
            if valid:
                out.append(data)
                packets += last

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * cycles)
    return out
