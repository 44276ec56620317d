"""Convolutional networks through the compiler and the backends, against the golden model.

The golden model (host/golden.py) computes convolution and pooling with plain numpy on
padded NCHW arrays; the compiler lays maps out NHWC in channel words and reads them
through LOOP patterns, so the two share nothing but the quantized model.
"""

import numpy as np
import pytest

from systolic.host import golden
from systolic.host.backends import get_backend
from systolic.host.backends.model.cycles import predict
from systolic.host.compile import CompileError, Program, ProgramError, compile_model, max_batch
from systolic.host.compile.program import beat_words
from systolic.host.metrics import cycle_breakdown
from systolic.host.nn.qmodel import random_quantized_cnn, random_quantized_model
from systolic.hw import isa
from systolic.hw.config import CoreConfig
from systolic.hw.isa import Opcode
from tests.conftest import SIM_CONFIGS

#: (input shape, conv layers, Linear sizes): odd sizes, stride 2, padding 0 and 1,
#: kernels 1 to 5, pooling 2 and 3, channel counts that are not multiples of the array.
NETS = {
    "lenet": ((1, 12, 12), [dict(out=4, kernel=3, padding=1, pool=2), (6, 3, 1, 1, 2)], [10]),
    "stride2-pool3": ((3, 9, 11), [(5, 3, 2, 1), dict(out=9, kernel=2, pool=3)], [7, 5]),
    "k5-17ch": ((2, 7, 7), [dict(out=17, kernel=5, padding=1)], [3]),
    "k1-k4": ((5, 6, 5), [dict(out=3, kernel=1), dict(out=7, kernel=4, padding=1, pool=2)], [4]),
    "three-convs": (
        (2, 10, 9),
        [(9, 3, 1, 1), dict(out=5, kernel=3, stride=2), dict(out=6, kernel=2, padding=1, pool=2)],
        [6],
    ),
}
CONFIGS = {
    "4x4": CoreConfig(rows=4, cols=4),
    "4x8": CoreConfig(rows=4, cols=8),  # two words (groups) a channel tile
    "8x4": CoreConfig(rows=8, cols=4),
    "3x5": CoreConfig(rows=3, cols=5, deep_pipeline=False),
    "16x16": CoreConfig(rows=16, cols=16),
}


def _inputs(q, n, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n, q.in_features)).astype(np.int8)


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_backend_equals_golden(net, name):
    cfg = CONFIGS[name]
    shape, convs, linears = NETS[net]
    q = random_quantized_cnn(shape, convs, linears, seed=len(net))
    x = _inputs(q, 7)
    want = golden.run(q, x)
    for batch in sorted({1, 3, min(4, max_batch(q, cfg))}):
        res = get_backend("model", cfg).run(compile_model(q, cfg, batch), x)
        assert res.status["error"] == 0
        np.testing.assert_array_equal(res.outputs, want, strict=True, err_msg=f"batch {batch}")


def _lenet(seed=0):
    return random_quantized_cnn(
        (1, 28, 28),
        [dict(out=8, kernel=3, padding=1, pool=2), dict(out=16, kernel=3, padding=1, pool=2)],
        [10],
        seed=seed,
    )


def test_lenet_program_uses_patterns_and_pooling():
    cfg = CoreConfig()
    q = _lenet()
    prog = compile_model(q, cfg, 2)
    ops = [isa.decode(int(w)) for w in prog.schedule["even"][prog.schedule["kind"] == 0]]
    loops = [f for op, f in ops if op is Opcode.LOOP]
    pooled = [f for op, f in ops if op is Opcode.POSTPROC and f["pool"]]
    assert loops and pooled
    # 2 images, 4 pooling phases: the first layer runs on 3x3 patches (9 values in 2 words
    # of 8 lanes), 2 MATMULs of 14x14 rows a phase; the second reads 9 kernel offsets of
    # one 8-channel word for each of its 2 output tiles, 7x7 rows each
    m = [f["m"] for op, f in ops if op is Opcode.MATMUL]
    assert m.count(14 * 14) == 2 * 4 * 2 and m.count(7 * 7) == 2 * 2 * 4 * 9
    assert prog.header["in_tiles"] == 28 * 28 * 2 and prog.header["image"]["patch"] == [3, 1]
    # every conv output the pooled maps need, and the Linear layer: 290k MACs an image
    assert prog.header["useful_macs_per_row"] == 28 * 28 * 8 * 9 + 14 * 14 * 16 * 72 + 784 * 10


def test_input_words_are_padded_nhwc_maps():
    """Without patches (a 1x1 first layer) an image is its padded NHWC map."""
    cfg = CoreConfig(rows=4, cols=4)
    q = random_quantized_cnn((6, 3, 4), [dict(out=2, kernel=1, padding=1)], [2], seed=1)
    prog = compile_model(q, cfg, 1)
    assert prog.header["image"]["patch"] == [1, 1]
    x = _inputs(q, 1)
    words = prog.input_words(x)[:, :4].view(np.int8)  # [5 * 6 pixels * 2 words, 4 lanes]
    maps = words.reshape(5, 6, 8)[..., :6]
    zp = q.layers[0].input_zero_point
    want = np.full((5, 6, 6), zp, np.int8)
    want[1:4, 1:5] = x.reshape(6, 3, 4).transpose(1, 2, 0)
    np.testing.assert_array_equal(maps, want)
    assert not words.reshape(5, 6, 8)[..., 6:].any()  # unused lanes are zero


def test_partial_batch_and_program_file(tmp_path):
    cfg = CONFIGS["4x8"]
    q = random_quantized_cnn(*NETS["lenet"], seed=4)
    x = _inputs(q, 5)
    prog = compile_model(q, cfg, 3)  # 5 images: a full batch and a partial one
    prog.save(tmp_path / "cnn.prog")
    back = Program.load(tmp_path / "cnn.prog", cfg)
    res = get_backend("model", cfg).run(back, x)
    np.testing.assert_array_equal(res.outputs, golden.run(q, x), strict=True)
    assert predict(cfg, back.beats(x))["cycles"] == res.cycles


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h["image"].update(shape=[1, 12, 13]), "has 156 values"),
        (lambda h: h["image"].update(patch=[1, 2]), "patch must be"),
        (lambda h: h["image"].update(pad=3), "pad is out of range"),
        (lambda h: h["image"].pop("zero_point"), "must be an object with"),
        (lambda h: h.update(in_tiles=h["in_tiles"] + 1), "header field in_tiles"),
        (lambda h: h["image"].update(fill_params=5), "preamble loads"),
    ],
)
def test_program_refuses_inconsistent_image_header(change, message):
    cfg = CONFIGS["4x4"]
    prog = compile_model(random_quantized_cnn(*NETS["lenet"], seed=2), cfg, 2)
    header = {**prog.header, "image": dict(prog.header["image"])}
    change(header)
    with pytest.raises(ProgramError, match=message):
        Program(cfg, header, prog.preamble, prog.schedule, prog.blocks)


def test_program_refuses_a_read_outside_the_input_region():
    cfg = CONFIGS["4x4"]
    prog = compile_model(random_quantized_cnn(*NETS["lenet"], seed=2), cfg, 2)
    s = {k: v.copy() for k, v in prog.schedule.items()}
    for i, w in enumerate(s["even"]):
        op, f = isa.decode(int(w))
        if op is Opcode.MATMUL and f["act_addr"] < cfg.act_depth:
            moved = f["act_addr"] + prog.header["input_regions"][1] - 10  # past its end
            s["even"][i] = isa.encode(op, **{**f, "act_addr": moved})
            break
    with pytest.raises(ProgramError, match="expected inside input region 0"):
        Program(cfg, prog.header, prog.preamble, s, prog.blocks)


@pytest.mark.parametrize("net", ["lenet", "mlp"])
def test_cycle_breakdown_partitions_the_run(net):
    """Every cycle of the run lands in exactly one place, and each layer's MATMUL rows
    are what its tiling gives."""
    cfg = CONFIGS["4x8"]
    if net == "mlp":
        q = random_quantized_model((30, 11, 6), seed=3)
        rows = [8 * 2 * 4, 4 * 1 * 4]  # K words x N tiles x 4 images
    else:
        q = random_quantized_cnn(*NETS["lenet"], seed=3)
        # 4 images. conv1 on 3x3 patches (3 words of 4 lanes), 4 phases of 6x6 pooled
        # pixels; conv2 9 offsets x 1 word (its 4 input channels: the empty second slice
        # of the 8-wide tile is no word), 4 phases of 3x3; the Linear 9 pixels x 2 words
        # (6 channels) x 2 output tiles (10 of 8 columns)
        rows = [3 * 4 * 36 * 4, 9 * 4 * 9 * 4, 9 * 2 * 2 * 4]
    x = _inputs(q, 4)
    prog = compile_model(q, cfg, 2)
    br = cycle_breakdown(prog, x)
    assert br["cycles"] == get_backend("model", cfg).run(prog, x).cycles
    parts = br["start"] + br["end"] + br["padding"]["cycles"]
    assert parts + sum(e["cycles"] for e in br["layers"]) == br["cycles"]
    assert [e["matmul_rows"] for e in br["layers"]] == rows
    assert all(0 < e["utilization"] <= 1 for e in br["layers"])
    assert (br["padding"]["cycles"] > 0) == (net != "mlp")


def test_too_large_batch_and_weights_are_refused():
    q = _lenet()
    cfg = CoreConfig()
    best = max_batch(q, cfg)
    compile_model(q, cfg, best)
    with pytest.raises(CompileError, match="input words"):
        compile_model(q, cfg, best + 1)
    with pytest.raises(CompileError, match="weight tiles"):
        compile_model(q, CoreConfig(weight_kib=4), 1)


def random_cnn(rng):
    """A random valid CNN geometry: 1 or 2 conv layers (kernels 1 to 5, stride 1 or 2,
    padding 0 or 1, pooling 2 or 3 where it fits, 1 to 9 channels) and 1 or 2 Linears."""
    c, h, w = int(rng.integers(1, 6)), int(rng.integers(5, 13)), int(rng.integers(5, 13))
    convs, hh, ww = [], h, w
    for _ in range(int(rng.integers(1, 3))):
        p = int(rng.integers(0, 2))
        k = int(rng.integers(1, min(5, hh + 2 * p, ww + 2 * p) + 1))
        s = int(rng.integers(1, 3))
        oh, ow = (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1
        pool = int(rng.choice([q for q in (0, 2, 3) if q <= min(oh, ow)]))
        convs.append(dict(out=int(rng.integers(1, 10)), kernel=k, stride=s, padding=p, pool=pool))
        hh, ww = (oh, ow) if not pool else ((oh - pool) // 2 + 1, (ow - pool) // 2 + 1)
    linears = [int(n) for n in rng.integers(2, 12, int(rng.integers(1, 3)))]
    return (c, h, w), convs, linears


@pytest.mark.rtl
def test_rtl_random_cnn_shapes_against_numpy():
    """Random conv geometries through the RTL (cocotb on Verilator) against the numpy
    golden model, and cycle for cycle against the model backend."""
    cfg = SIM_CONFIGS["3x5"]  # non-square, groups of 2 words, the shallow pipeline
    rng = np.random.default_rng(2026)
    for i in range(4):
        shape, convs, linears = random_cnn(rng)
        q = random_quantized_cnn(shape, convs, linears, seed=i)
        x = _inputs(q, 3, seed=i)
        prog = compile_model(q, cfg, min(2, max_batch(q, cfg)))
        rtl = get_backend("rtl", cfg).run(prog, x)
        what = f"{shape} {convs} {linears}"
        np.testing.assert_array_equal(rtl.outputs, golden.run(q, x), strict=True, err_msg=what)
        assert rtl.cycles == rtl.predicted_cycles, what


def test_random_cnn_shapes_on_the_model_backend():
    rng = np.random.default_rng(7)
    for i in range(25):
        shape, convs, linears = random_cnn(rng)
        q = random_quantized_cnn(shape, convs, linears, seed=i)
        x = _inputs(q, 3, seed=i)
        for cfg in (CONFIGS["4x8"], CONFIGS["3x5"]):
            res = get_backend("model", cfg).run(compile_model(q, cfg, 2), x)
            what = f"{shape} {convs} {linears} on {cfg.rows}x{cfg.cols}"
            np.testing.assert_array_equal(res.outputs, golden.run(q, x), strict=True, err_msg=what)


@pytest.mark.rtl
def test_rtl_equals_model_on_cnns():
    """Bytes and cycles of the RTL equal the model backend's on small CNNs (patterns,
    pooling into the same words, padding borders, strided reads)."""
    cfg = SIM_CONFIGS["4x4"]
    for net in ("lenet", "stride2-pool3"):
        q = random_quantized_cnn(*NETS[net], seed=5)
        x = _inputs(q, 3, seed=5)
        prog = compile_model(q, cfg, 2)
        rtl = get_backend("rtl", cfg).run(prog, x)
        model = get_backend("model", cfg).run(prog, x)
        np.testing.assert_array_equal(rtl.outputs, golden.run(q, x), strict=True)
        np.testing.assert_array_equal(rtl.out_beats, model.out_beats, strict=True)
        assert rtl.cycles == rtl.predicted_cycles == model.cycles


@pytest.mark.parametrize("net", ["lenet", "mlp"])
def test_one_image_latency_is_the_run_without_the_resident_loads(net):
    """``cycles - resident_beats`` of a one-image run is what the same program takes with
    its weight and parameter LOADs taken out (the weights already on chip): the cycle
    model run on the stream without them."""
    cfg = CONFIGS["4x8"]
    q = random_quantized_model((30, 11, 6), seed=3) if net == "mlp" else _lenet()
    x = _inputs(q, 1)
    prog = compile_model(q, cfg, 1)
    br = cycle_breakdown(prog, x)
    beats = prog.beats(x)
    words = beat_words(beats)
    keep, pos, seen_row = [], 0, False
    while pos < len(beats):  # walk the instruction headers; drop resident LOADs
        op, f = isa.decode(int(words[pos]))
        n = 1 + (f["count"] if op is Opcode.LOAD else 0)
        seen_row |= op in (Opcode.MATMUL, Opcode.POSTPROC)
        if not (op is Opcode.LOAD and isa.Target(f["target"]) is not isa.Target.ACT) or seen_row:
            keep.extend(range(pos, pos + n))
        pos += n
    assert br["resident_beats"] == len(beats) - len(keep) > 0
    assert predict(cfg, beats[keep])["cycles"] == br["cycles"] - br["resident_beats"]
