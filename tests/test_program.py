"""The program file: round trip, and every way a program is refused."""

import hashlib
import io
import json
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systolic.host import golden
from systolic.host.backends import get_backend
from systolic.host.compile import compile_model
from systolic.host.compile.emit import Emitter
from systolic.host.compile.program import (
    DIGEST_BYTES,
    HEADER_FIELDS,
    ITEM_BLOCK,
    ITEM_FIRST_INPUT,
    ITEM_NEXT_INPUT,
    ITEM_WORD,
    MAGIC,
    SCHEDULE_ARRAYS,
    VERSION,
    Program,
    ProgramError,
)
from systolic.host.nn.qmodel import random_quantized_model
from systolic.hw import isa
from systolic.hw.config import CoreConfig
from systolic.hw.isa import Opcode, Target

CFG = CoreConfig(rows=4, cols=4)
QMODEL = random_quantized_model((40, 12, 6), seed=2)
X = np.random.default_rng(0).integers(-128, 128, (19, 40)).astype(np.int8)


@pytest.fixture(scope="module")
def program():
    return compile_model(QMODEL, CFG, 8)


@pytest.fixture(scope="module")
def blob(program, tmp_path_factory):
    path = tmp_path_factory.mktemp("prog") / "net.prog"
    program.save(str(path))
    return path.read_bytes()


def _parts(program):
    """The header (with its config) and the arrays that :meth:`Program.save` writes."""
    header = {"config": program.config.to_dict(), **program.header}
    arrays = {f"schedule_{k}": v.copy() for k, v in program.schedule.items()}
    arrays["preamble"] = program.preamble.copy()
    for i, b in enumerate(program.blocks):
        arrays[f"block_{i}"] = b.copy()
    return header, arrays


def _checksummed(body):
    return body + hashlib.sha256(body).digest()


def _file(header, arrays, raw_header=None):
    """A program file with a correct checksum over whatever header and arrays it is given."""
    hjson = raw_header if raw_header is not None else json.dumps(header).encode()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return _checksummed(MAGIC + struct.pack("<HI", VERSION, len(hjson)) + hjson + buf.getvalue())


def _load_bytes(tmp_path, data, name="p.prog"):
    path = tmp_path / name
    path.write_bytes(data)
    return Program.load(str(path))


def _same(a, b):
    return a.config == b.config and a.header == b.header and np.array_equal(a.beats(X), b.beats(X))


def _runs_correctly(prog):
    """A program that loads must run on the model without an error code, bit-exact."""
    res = get_backend("model", prog.config).run(prog, X)
    assert res.error == 0
    np.testing.assert_array_equal(res.outputs, golden.run(QMODEL, X), strict=True)


def test_round_trip(program, blob, tmp_path):
    again = _load_bytes(tmp_path, blob)
    assert _same(program, again)
    assert blob[-DIGEST_BYTES:] == hashlib.sha256(blob[:-DIGEST_BYTES]).digest()
    assert struct.unpack("<H", blob[8:10])[0] == VERSION == 2
    _runs_correctly(again)


def test_refused(program, blob, tmp_path):
    path = tmp_path / "net.prog"
    path.write_bytes(blob)
    cases = {
        "truncated": (blob[: len(blob) // 2], r"truncated or corrupt \(checksum mismatch\)"),
        "short": (blob[:10], "truncated header"),
        "magic": (b"NOTAPROG" + blob[8:], "bad magic number"),
        "version": (MAGIC + struct.pack("<H", 99) + blob[10:], "format version 99"),
        "version 1": (
            MAGIC + struct.pack("<H", 1) + blob[10:],
            "format version 1, this reader supports 2",
        ),
        "flipped": (blob[:100] + bytes([blob[100] ^ 4]) + blob[101:], "checksum mismatch"),
    }
    for name, (data, message) in cases.items():
        bad = tmp_path / f"{name}.prog"
        bad.write_bytes(data)
        with pytest.raises(ProgramError, match=message):
            Program.load(str(bad))
    with pytest.raises(ProgramError, match=r"compiled for r4c4-\w+ \(4x4\), not for r8c8"):
        Program.load(str(path), CoreConfig())
    with pytest.raises(ProgramError, match="No such file"):
        Program.load(str(tmp_path / "missing.prog"))


def test_every_byte_flip_refused(program, blob, tmp_path):
    """No single corrupted byte gets through: the checksum covers the whole file."""
    loaded = 0
    for i in range(len(blob)):
        for mask in (0x01, 0xFF) if i % 7 == 0 else (0x01,):
            data = bytearray(blob)
            data[i] ^= mask
            try:
                again = _load_bytes(tmp_path, bytes(data))
            except ProgramError:
                continue
            assert _same(program, again), f"byte {i} ^ {mask:#x} loaded a different program"
            loaded += 1
    assert loaded == 0


def test_every_truncation_refused(blob, tmp_path):
    for n in range(len(blob)):
        with pytest.raises(ProgramError):
            _load_bytes(tmp_path, blob[:n])
    with pytest.raises(ProgramError, match="checksum mismatch"):
        _load_bytes(tmp_path, blob + b"\0")


def test_rehashed_byte_flips_refused_or_consistent(blob, tmp_path):
    """Flips behind a recomputed checksum: refused with a ProgramError, or a program that
    still runs correctly (a buffer size, a counter, zip metadata). Every header byte, and
    every third byte of the array archive."""
    body = blob[:-DIGEST_BYTES]
    header_end = len(MAGIC) + 6 + struct.unpack("<I", blob[10:14])[0]
    refused = 0
    for i in [*range(len(MAGIC), header_end), *range(header_end, len(body), 3)]:
        data = bytearray(body)
        data[i] ^= 0x01
        try:
            prog = _load_bytes(tmp_path, _checksummed(bytes(data)))
        except ProgramError:
            refused += 1
            continue
        _runs_correctly(prog)
    assert refused > 0.8 * (header_end - len(MAGIC))


def _edit(program, field, value):
    header, arrays = _parts(program)
    if value is _DELETE:
        del header[field]
    else:
        header[field] = value
    return _file(header, arrays)


class _Delete:
    """Marks a header field to remove (a stable repr, so test ids agree across workers)."""

    def __repr__(self):
        return "<deleted>"


_DELETE = _Delete()

#: (field, value, message): a header field changed behind a valid checksum.
HEADER_CASES = [
    ("batch", "8", r"header field batch must be an integer, not '8'"),
    ("batch", True, r"header field batch must be an integer, not True"),
    ("batch", 8.0, r"header field batch must be an integer, not 8\.0"),
    ("batch", 0, r"header field batch must be between 1 and 1023, not 0"),
    ("batch", 1024, r"header field batch must be between 1 and 1023, not 1024"),
    ("batch", 7, r"schedule word 1: MATMUL m is 8, expected the batch 7"),
    ("batch", 9, r"input_regions \[0, 80\] overlap, expected bases at least 90 words"),
    ("batch", _DELETE, r"header has no field\(s\) batch"),
    ("notes", "hello", r"unknown header field\(s\): notes"),
    ("in_features", 0, r"header field in_features must be at least 1, not 0"),
    ("in_features", None, r"header field in_features must be an integer, not None"),
    (
        "in_features",
        41,
        r"header field in_tiles is 10, expected 11 \(ceil\(in_features 41 / "
        r"rows 4\)\)",
    ),
    ("in_tiles", 11, r"header field in_tiles is 11, expected 10"),
    (
        "out_features",
        9,
        r"header field out_tiles is 2, expected 3 \(ceil\(out_features 9 / "
        r"cols 4\)\)",
    ),
    (
        "out_features",
        7,
        r"header field sizes is \[40, 12, 6\], expected in_features 40 first "
        r"and out_features 7 last",
    ),
    ("out_tiles", "2", r"header field out_tiles must be an integer, not '2'"),
    ("input_regions", [0], r"input_regions must be a list of two integers, not \[0\]"),
    ("input_regions", [0, 80.0], r"input_regions must be a list of two integers"),
    ("input_regions", {"0": 0}, r"input_regions must be a list of two integers"),
    (
        "input_regions",
        [-1, 80],
        r"input_regions has -1, expected a base address with its 80 "
        r"input words \(in_tiles \* batch\) inside the input buffer "
        r"\[0, 32768\)",
    ),
    ("input_regions", [0, 32689], r"input_regions has 32689, expected"),
    ("input_regions", [0, 79], r"input_regions \[0, 79\] overlap"),
    (
        "input_regions",
        [0, 81],
        r"schedule word 1: odd-batch word MATMUL .*'act_addr': 80.*, "
        r"expected MATMUL .*'act_addr': 81.* moved to 81",
    ),
    (
        "input_regions",
        [1, 81],
        r"schedule word 1: MATMUL reads input words 0\.\.7, expected "
        r"inside input region 0 \[1, 81\)",
    ),
    ("raw", 1, r"header field raw must be true or false, not 1"),
    ("raw", True, r"schedule word 59: POSTPROC raw is 0, expected 1 \(header field raw\)"),
    ("useful_macs_per_row", -1, r"useful_macs_per_row must be at least 0, not -1"),
    ("useful_macs_per_row", "552", r"useful_macs_per_row must be an integer, not '552'"),
    ("sizes", "40,12,6", r"sizes must be a list of at least two positive integers"),
    ("sizes", [40], r"sizes must be a list of at least two positive integers, not \[40\]"),
    ("sizes", [40, 0, 6], r"sizes must be a list of at least two positive integers"),
    ("sizes", [40, True, 6], r"sizes must be a list of at least two positive integers"),
    ("sizes", [41, 12, 6], r"sizes is \[41, 12, 6\], expected in_features 40 first"),
    (
        "sizes",
        [40, 16, 6],
        r"preamble loads 20 BIAS beats, expected 24 \(4-channel parameter "
        r"words for sizes \[40, 16, 6\]\)",
    ),
    ("weights_resident", 1, r"weights_resident must be true or false, not 1"),
    (
        "weights_resident",
        False,
        r"0 weight blocks, expected 36 \(weights_resident false, "
        r"weight_tiles 36\)",
    ),
    (
        "weight_tiles",
        35,
        r"preamble loads 144 WEIGHT beats, expected 140 \(weight_tiles 35 x "
        r"rows 4\)",
    ),
    ("weight_tiles", 10**6, r"weight_tiles is 1000000, expected at most 8192"),
    ("weight_tiles", 0, r"weight_tiles must be at least 1, not 0"),
    ("config", _DELETE, r"header has no field config"),
    ("config", [4, 4], r"header field config: configuration must be a JSON object"),
]


@pytest.mark.parametrize(
    "field, value, message", HEADER_CASES, ids=[f"{f}={v!r}"[:40] for f, v, _ in HEADER_CASES]
)
def test_rehashed_header_field_refused(program, tmp_path, field, value, message):
    with pytest.raises(ProgramError, match=message):
        _load_bytes(tmp_path, _edit(program, field, value))


CONFIG_CASES = [
    ({"rows": 5}, r"header field in_tiles is 10, expected 8 \(ceil\(in_features 40 / rows 5\)\)"),
    ({"rows": "4"}, r"header field config: rows must be an integer, not '4'"),
    ({"cols": 3}, r"preamble loads 20 BIAS beats, expected 18 \(3-channel parameter words"),
    ({"cols": 2}, r"header field out_tiles is 2, expected 3 \(ceil\(out_features 6 / cols 2\)\)"),
    (
        {"queue_depth": 5},
        r"schedule item 13: next-input chunk after 6 engine instructions, "
        r"expected at least 7 \(queue_depth \+ 2\) or a SYNC before it",
    ),
    (
        {"act_kib": 1},
        r"schedule word 50 \(even\): the core refuses this POSTPROC \(ACT_RANGE\)"
        r": \{'acc_addr': 0, 'm': 8, 'param_addr': 0, 'dst_addr': 32768, ",
    ),
    ({"param_depth": 4}, r"preamble beat 0: the core refuses this LOAD \(PARAM_RANGE\)"),
    ({"colour": 1}, r"header field config: unknown configuration field\(s\): colour"),
]


@pytest.mark.parametrize("change, message", CONFIG_CASES, ids=[str(c) for c, _ in CONFIG_CASES])
def test_rehashed_config_refused(program, tmp_path, change, message):
    header, arrays = _parts(program)
    header["config"] = {**header["config"], **change}
    with pytest.raises(ProgramError, match=message):
        _load_bytes(tmp_path, _file(header, arrays))


def _word(op, **fields):
    return np.uint64(isa.encode(op, **fields))


def _set(name, index, value):
    def edit(arrays):
        arrays[name][index] = value

    return edit


def _replace(name, value):
    def edit(arrays):
        arrays[name] = value(arrays[name]) if callable(value) else value

    return edit


MM = dict(act_addr=0, weight_tile=0, acc_addr=0, m=8, accumulate=0)

#: (edit of the saved arrays, message): arrays changed behind a valid checksum.
ARRAY_CASES = [
    (
        _set("schedule_kind", 0, 4),
        r"schedule item 0: kind 4, expected 0 \(word\), 1 \(next "
        r"input\), 2 \(block\) or 3 \(first input\)",
    ),
    (_set("schedule_kind", 0, 2), r"schedule item 0: block 0, expected an index below 0"),
    (
        _replace("schedule_even", lambda a: a.astype(np.float64)),
        r"schedule array even must be a 1-D uint64 array, not float64 \[61\]",
    ),
    (
        _replace("schedule_start", lambda a: a[:-1]),
        r"schedule array start has 60 items, expected 61 \(as kind\)",
    ),
    (
        _replace("schedule_count", lambda a: a.reshape(1, -1)),
        r"schedule array count must be a 1-D integer array, not int64 \[1, 61\]",
    ),
    (_set("schedule_start", 13, 1), r"schedule item 13: next-input chunk starts at 1, expected 0"),
    (
        _set("schedule_start", 24, 73),
        r"schedule item 24: next-input chunk start 73 count 8, "
        r"expected a non-empty chunk inside input words \[0, 80\)",
    ),
    (_set("schedule_count", 34, 7), r"the next-input chunks load 79 input words, expected 80"),
    (_set("schedule_count", 13, 0), r"schedule item 13: next-input chunk start 0 count 0"),
    (
        _set("schedule_even", 1, _word(Opcode.MATMUL, **MM) | np.uint64(1 << 62)),
        r"schedule word 1 \(even\): MATMUL word 0x40.* has bits set outside its fields",
    ),
    (_set("schedule_even", 1, np.uint64(0xE)), r"schedule word 1 \(even\): unknown opcode 14"),
    (
        _set("schedule_odd", 1, _word(Opcode.END)),
        r"schedule word 1 \(odd\): END, expected MATMUL or POSTPROC or SYNC",
    ),
    (
        _set("schedule_even", 1, _word(Opcode.LOAD, target=0, addr=0, count=1)),
        r"schedule word 1 \(even\): LOAD, expected MATMUL or POSTPROC or SYNC",
    ),
    (
        _set("schedule_even", 1, _word(Opcode.MATMUL, **{**MM, "act_addr": 65530})),
        r"schedule word 1 \(even\): the core refuses this MATMUL \(ACT_RANGE\)",
    ),
    (
        _set(
            "schedule_even",
            59,
            _word(
                Opcode.POSTPROC,
                acc_addr=0,
                m=8,
                param_addr=3,
                dst_addr=0,
                group=0,
                to_stream=0,
                raw=1,
            ),
        ),
        r"schedule word 59 \(even\): the core refuses this POSTPROC \(BAD_GROUP\)",
    ),
    (
        _set("schedule_kind", 49, ITEM_NEXT_INPUT),
        r"schedule item 49: next-input chunk start 0 count 0",
    ),
    (
        _replace("preamble", lambda a: a.astype(np.int64)),
        r"preamble must be uint8 \[n, 8\] beats, not int64 \[187, 8\]",
    ),
    (
        _replace("preamble", lambda a: a[:-1]),
        r"preamble beat 42: the LOAD's 144 data beats "
        r"run past the end of the preamble \(143 left\)",
    ),
    (_replace("preamble", lambda a: a[:, :4]), r"preamble must be uint8 \[n, 8\] beats"),
    (
        _set("preamble", (0, slice(0, 8)), np.frombuffer(_word(Opcode.SYNC).tobytes(), np.uint8)),
        r"preamble beat 0: SYNC, expected LOAD",
    ),
    (
        _replace("block_0", np.zeros((1, 8), np.uint8)),
        r"1 weight blocks, expected 0 \(weights_resident true",
    ),
    (_replace("extra", np.zeros(3)), r"arrays \[.*'extra'.*\], expected"),
]


@pytest.mark.parametrize("edit, message", ARRAY_CASES, ids=[m[:30] for _, m in ARRAY_CASES])
def test_rehashed_arrays_refused(program, tmp_path, edit, message):
    header, arrays = _parts(program)
    edit(arrays)
    with pytest.raises(ProgramError, match=message):
        _load_bytes(tmp_path, _file(header, arrays))


def test_rehashed_malformed_header_and_archive(program, tmp_path):
    header, arrays = _parts(program)
    cases = [
        (b"[1, 2]", "header must be a JSON object, not list"),
        (b'{"batch": 8', "header is not valid JSON"),
        (b"\xff\xfe", "header is not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "header is not valid JSON"),
        (b'{"batch": NaN}', "header has no field config"),
    ]
    for raw, message in cases:
        with pytest.raises(ProgramError, match=message):
            _load_bytes(tmp_path, _file(header, arrays, raw_header=raw))
    hjson = json.dumps(header).encode()
    for tail, message in (
        (b"", "array archive is corrupt"),
        (b"not a zip archive", "array archive is corrupt"),
        (b"\x93NUMPY", "array archive is corrupt"),
    ):
        body = MAGIC + struct.pack("<HI", VERSION, len(hjson)) + hjson + tail
        with pytest.raises(ProgramError, match=message):
            _load_bytes(tmp_path, _checksummed(body))
    body = MAGIC + struct.pack("<HI", VERSION, 10**6) + hjson
    with pytest.raises(ProgramError, match=r"header length 1000000 runs past the end"):
        _load_bytes(tmp_path, _checksummed(body))


def test_streamed_weight_blocks(tmp_path):
    cfg = CoreConfig(rows=4, cols=4, weight_kib=1)
    prog = compile_model(random_quantized_model((100, 40, 10), seed=1), cfg, 4)
    assert not prog.header["weights_resident"] and len(prog.blocks) == 280
    header, arrays = _parts(prog)
    prog.save(str(tmp_path / "ok.prog"))
    again = Program.load(str(tmp_path / "ok.prog"), cfg)
    x = np.random.default_rng(1).integers(-128, 128, (9, 100)).astype(np.int8)
    np.testing.assert_array_equal(again.beats(x), prog.beats(x), strict=True)
    cases = [
        (
            _replace(f"block_{len(prog.blocks) - 1}", None),
            r"279 weight blocks, expected 280 \(weights_resident false, weight_tiles 280\)",
        ),
        (
            _replace("block_3", lambda a: np.concatenate([a, a])),
            r"block 3 loads 8 WEIGHT beats, expected 4 \(one tile\)",
        ),
        (_replace("block_3", lambda a: a[:3]), r"block 3 beat 0: the LOAD's 4 data beats"),
    ]
    for edit, message in cases:
        h, a = _parts(prog)
        edit(a)
        a = {k: v for k, v in a.items() if v is not None}
        with pytest.raises(ProgramError, match=message):
            _load_bytes(tmp_path, _file(h, a))
    kind = arrays["schedule_kind"]
    block_item = int(np.flatnonzero(kind == 2)[0])
    arrays["schedule_block"][block_item] = 280
    with pytest.raises(
        ProgramError,
        match=rf"schedule item {block_item}: block 280, expected "
        rf"an index below 280",
    ):
        _load_bytes(tmp_path, _file(header, arrays))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(HEADER_FIELDS + ("config",)),
    value=_JSON,
    config_field=st.sampled_from(sorted(CFG.to_dict())),
)
def test_any_rehashed_header_value_only_program_error(
    program, tmp_path, field, value, config_field
):
    """Whatever a header field (or a configuration field) holds, loading raises only
    ProgramError, and a program that loads runs correctly."""
    for target in ("header", "config"):
        header, arrays = _parts(program)
        if target == "header":
            header[field] = value
        else:
            header["config"] = {**header["config"], config_field: value}
        try:
            prog = _load_bytes(tmp_path, _file(header, arrays))
        except ProgramError:
            continue
        _runs_correctly(prog)


def test_unknown_opcode_refused(program):
    schedule = dict(program.schedule)
    schedule["even"] = schedule["even"].copy()
    schedule["even"][np.flatnonzero(schedule["kind"] == ITEM_WORD)[0]] = 0xE
    with pytest.raises(ProgramError, match="unknown opcode 14"):
        Program(program.config, program.header, program.preamble, schedule)


def test_constructor_refuses_wrong_types(program):
    with pytest.raises(ProgramError, match="config must be a CoreConfig, not dict"):
        Program({}, program.header, program.preamble, program.schedule)
    with pytest.raises(ProgramError, match="header must be a dict, not list"):
        Program(program.config, [], program.preamble, program.schedule)
    with pytest.raises(ProgramError, match=r"schedule has arrays \['kind'\], expected kind, even"):
        Program(
            program.config, program.header, program.preamble, {"kind": program.schedule["kind"]}
        )


def test_wrong_inputs_and_config(program):
    with pytest.raises(ProgramError, match=r"inputs must be int8 \[n, 40\], not int8 \[3, 39\]"):
        program.beats(np.zeros((3, 39), np.int8))
    with pytest.raises(ProgramError, match="compiled for"):
        get_backend("model", CoreConfig()).run(program, np.zeros((3, 40), np.int8))


def test_stream_ends_with_end_and_parses(program):
    x = np.zeros((9, 40), np.int8)
    beats = program.beats(x)
    assert isa.decode(int(beats[-1, :8].view("<u8")[0]))[0] is isa.Opcode.END
    res = get_backend("model", program.config).run(program, x)
    assert res.outputs.shape == (9, 6)
    with pytest.raises(ProgramError, match="result beats, expected"):
        program.parse_output(res.out_beats[1:], 9)


# -- the first batch's inputs, loaded in chunks between its MATMULs ----------------------


def _items(schedule):
    """The schedule as a list of ``(kind, even, odd, start, count, block)`` tuples."""
    return list(zip(*(schedule[k].tolist() for k in SCHEDULE_ARRAYS), strict=True))


def _arrays(items, like):
    """Schedule arrays from item tuples, with the dtypes of ``like``'s."""
    cols = list(zip(*items, strict=True))
    return {k: np.array(c, like[k].dtype) for k, c in zip(SCHEDULE_ARRAYS, cols, strict=True)}


def _first_input_program(program, ahead=0):
    """``program`` with its first-input chunks (if any) rewritten: before each MATMUL of
    input region 0 that reads past the words loaded so far, one chunk up to the last word
    it reads (and ``ahead`` more). The program must use linear addressing."""
    cfg, (r0, _) = program.config, program.header["input_regions"]
    words = program.header["in_tiles"] * program.batch
    items, loaded = [], 0
    for item in _items(program.schedule):
        if item[0] == ITEM_FIRST_INPUT:
            continue
        if item[0] == ITEM_WORD:
            op, f = isa.decode(item[1])
            assert op is not Opcode.LOOP
            if op is Opcode.MATMUL and f["act_addr"] < cfg.act_depth:
                last = f["act_addr"] - r0 + f["m"] - 1
                if last >= loaded:
                    end = min(last + 1 + ahead, words)
                    items.append((ITEM_FIRST_INPUT, 0, 0, loaded, end - loaded, 0))
                    loaded = end
        items.append(item)
    assert loaded == words
    schedule = _arrays(items, program.schedule)
    return Program(program.config, program.header, program.preamble, schedule, program.blocks)


def _without_first_input(program):
    keep = program.schedule["kind"] != ITEM_FIRST_INPUT
    schedule = {k: v[keep] for k, v in program.schedule.items()}
    return Program(program.config, program.header, program.preamble, schedule, program.blocks)


def _beat_word(beat):
    return int(np.asarray(beat, np.uint8)[:8].view("<u8")[0])


def _layout(x, cfg, batch, k_tiles):
    """Activation words of one batch (``k_tile * batch + row``), ``rows`` lanes each."""
    xp = np.zeros((batch, k_tiles * cfg.rows), np.int8)
    xp[: len(x), : x.shape[1]] = x
    return xp.reshape(batch, k_tiles, cfg.rows).transpose(1, 0, 2).reshape(-1, cfg.rows)


@pytest.mark.parametrize("ahead", [0, 12])
def test_first_input_chunks_before_their_matmuls(program, ahead):
    """Each first-input chunk's LOAD comes right before the MATMUL after it in batch 0;
    batch 1 loads none (its inputs came with batch 0's next-input chunks)."""
    prog = _first_input_program(program, ahead)
    cfg, B, kt = prog.config, prog.batch, prog.header["in_tiles"]
    r0, r1 = prog.header["input_regions"]
    x = X[: 2 * B]
    beats = prog.beats(x)
    words = [_layout(x[b * B : (b + 1) * B], cfg, B, kt) for b in range(2)]
    items = _items(prog.schedule)
    assert any(item[0] == ITEM_FIRST_INPUT for item in items)
    assert not np.any(prog.schedule["kind"] == ITEM_BLOCK)  # resident weights

    def expect_load(pos, base, data):
        """The LOAD at beat ``pos``: header, then ``data`` in each beat's low lanes."""
        op, f = isa.decode(_beat_word(beats[pos]))
        assert (op, Target(f["target"]), f["addr"], f["count"]) == (
            Opcode.LOAD,
            Target.ACT,
            base,
            len(data),
        )
        got = beats[pos + 1 : pos + 1 + len(data), : cfg.rows].view(np.int8)
        np.testing.assert_array_equal(got, data, strict=True)
        return pos + 1 + len(data)

    pos = len(prog.preamble)  # no preload: batch 0's schedule starts right away
    chunks = 0
    for i, (kind, even, _, start, count, _) in enumerate(items):
        if kind == ITEM_WORD:
            assert _beat_word(beats[pos]) == even, f"beat {pos}, schedule item {i}"
            pos += 1
        elif kind == ITEM_NEXT_INPUT:
            pos = expect_load(pos, r1 + start, words[1][start : start + count])
        else:
            assert kind == ITEM_FIRST_INPUT
            pos = expect_load(pos, r0 + start, words[0][start : start + count])
            assert isa.decode(_beat_word(beats[pos]))[0] is Opcode.MATMUL
            chunks += 1
    assert chunks == sum(item[0] == ITEM_FIRST_INPUT for item in items)
    # batch 1: its instruction words and nothing else (no next batch), then END
    odd = [item[2] for item in items if item[0] == ITEM_WORD]
    assert [_beat_word(b) for b in beats[pos:]] == [*odd, isa.encode(Opcode.END)]


def test_first_input_programs_run(program):
    """With first-input chunks, one partial batch, two batches and three (the last
    partial) all compute the golden outputs."""
    prog = _first_input_program(program, 5)
    backend = get_backend("model", prog.config)
    for n in (5, 16, len(X)):
        res = backend.run(prog, X[:n])
        assert res.error == 0
        np.testing.assert_array_equal(res.outputs, golden.run(QMODEL, X[:n]), strict=True)


def test_without_first_input_preloads_the_batch(program):
    """Without first-input chunks the first batch is loaded whole after the preamble."""
    prog = _without_first_input(program)
    cfg, B, r0 = prog.config, prog.batch, prog.header["input_regions"][0]
    words = prog.header["in_tiles"] * B
    beats = prog.beats(X)
    pos = len(prog.preamble)
    op, f = isa.decode(_beat_word(beats[pos]))
    assert (op, Target(f["target"]), f["addr"], f["count"]) == (Opcode.LOAD, Target.ACT, r0, words)
    got = beats[pos + 1 : pos + 1 + words, : cfg.rows].view(np.int8)
    np.testing.assert_array_equal(got, _layout(X[:B], cfg, B, prog.header["in_tiles"]))
    first = next(item for item in _items(prog.schedule) if item[0] == ITEM_WORD)
    assert _beat_word(beats[pos + 1 + words]) == first[1]
    _runs_correctly(prog)


def _retarget(item, addr, r0, r1):
    """A MATMUL item reading ``addr`` (even batches) instead."""
    _, f = isa.decode(item[1])
    even = isa.encode(Opcode.MATMUL, **{**f, "act_addr": addr})
    odd = isa.encode(Opcode.MATMUL, **{**f, "act_addr": addr - r0 + r1})
    return (ITEM_WORD, even, odd, *item[3:])


def test_first_input_chunks_refused(program):
    """A MATMUL before the chunk with its words, chunks out of order, out of range,
    empty, or not covering the batch's input words."""
    prog = _first_input_program(program)
    r0, r1 = prog.header["input_regions"]
    words = prog.header["in_tiles"] * prog.batch
    items = _items(prog.schedule)
    fi = [i for i, item in enumerate(items) if item[0] == ITEM_FIRST_INPUT]
    # each chunk is followed by the MATMUL that reads it (one K tile of the batch)
    assert all(items[i + 1][0] == ITEM_WORD for i in fi) and len(fi) == words // prog.batch

    def refused(edit, message):
        new = list(items)
        edit(new)
        schedule = _arrays(new, prog.schedule)
        with pytest.raises(ProgramError, match=re.escape(message)):
            Program(prog.config, prog.header, prog.preamble, schedule, prog.blocks)

    def swap(i, j):
        def edit(new):
            new[i], new[j] = new[j], new[i]

        return edit

    def chunk(i, start, count):
        def edit(new):
            new[i] = (ITEM_FIRST_INPUT, 0, 0, start, count, 0)

        return edit

    a, b = fi[0], fi[1]  # words 0..7, then 8..15
    refused(
        swap(b, b + 1),
        f"schedule word {b}: MATMUL reads input words {r0 + 8}..{r0 + 15} before the "
        f"first-input chunks have loaded them (loaded so far: words {r0}..{r0 + 7})",
    )
    refused(
        lambda new: new.pop(a),
        f"schedule word {a}: MATMUL reads input words {r0}..{r0 + 7} before the "
        f"first-input chunks have loaded them (loaded so far: none)",
    )
    refused(
        swap(a, b),
        f"schedule item {a}: first-input chunk starts at 8, expected 0 (the chunks load "
        f"input words 0..{words - 1} once, in order)",
    )
    refused(chunk(b, 0, 8), f"schedule item {b}: first-input chunk starts at 0, expected 8")
    refused(
        chunk(fi[-1], words - 4, 8),
        f"schedule item {fi[-1]}: first-input chunk start {words - 4} count 8, expected a "
        f"non-empty chunk inside input words [0, {words}) (in_tiles * batch)",
    )
    refused(chunk(b, 8, 0), f"schedule item {b}: first-input chunk start 8 count 0")

    def drop_last(new):
        """The last chunk gone, and its words read from the chunk before instead."""
        last = items[fi[-1]][3]
        for i, item in enumerate(new):
            if item[0] == ITEM_WORD and isa.decode(item[1])[0] is Opcode.MATMUL:
                if isa.decode(item[1])[1]["act_addr"] == r0 + last:
                    new[i] = _retarget(item, r0 + last - 8, r0, r1)
        new.pop(fi[-1])

    refused(
        drop_last,
        f"the first-input chunks load {words - 8} input words, expected {words} (in_tiles * batch)",
    )


def test_first_input_round_trip(program, tmp_path):
    prog = _first_input_program(program, 3)
    prog.save(str(tmp_path / "fi.prog"))
    again = Program.load(str(tmp_path / "fi.prog"), prog.config)
    assert again.schedule["kind"].dtype == prog.schedule["kind"].dtype
    for k in SCHEDULE_ARRAYS:
        np.testing.assert_array_equal(again.schedule[k], prog.schedule[k], strict=True)
    assert np.count_nonzero(again.schedule["kind"] == ITEM_FIRST_INPUT) > 1
    assert _same(prog, again)


def test_emitter_first_input_items_stay_in_place():
    """:meth:`Emitter.first_input` items stay where they are written; a next-input chunk
    whose slot falls just before one goes after it."""
    em = Emitter(CFG, [0, 80])
    for k in range(10):
        em.first_input(8 * k, 8)
        em.word(Opcode.MATMUL, "act_addr", **{**MM, "act_addr": 8 * k, "accumulate": int(k > 0)})
    s = em.schedule(80)
    got = [
        (int(kind), int(start), int(count))
        for kind, start, count in zip(s["kind"], s["start"], s["count"], strict=True)
    ]
    # slots after the MATMULs from the (queue_depth + 2)th on, 80 words spread evenly
    first_slot = CFG.input_reload_distance - 1
    per = -(-80 // (10 - first_slot))
    want, nxt = [], 0
    for k in range(10):
        want.append((ITEM_FIRST_INPUT, 8 * k, 8))
        if k > first_slot:
            want.append((ITEM_NEXT_INPUT, nxt, per))
            nxt += per
        want.append((ITEM_WORD, 0, 0))
    want.append((ITEM_NEXT_INPUT, nxt, 80 - nxt))
    assert got == want
    words = [isa.decode(int(w))[1]["act_addr"] for w in s["odd"][s["kind"] == ITEM_WORD]]
    assert words == [80 + 8 * k for k in range(10)]


def test_schedule_must_end_linear(program):
    """The schedule runs once a batch and every run starts with both patterns linear, so
    one that ends with a pattern set is refused (the next batch would run under it)."""
    loop = _word(Opcode.LOOP, target=0, inner=2, outer=1, inner_stride=0, outer_stride=0)
    items = _items(program.schedule) + [(ITEM_WORD, loop, loop, 0, 0, 0)]
    schedule = _arrays(items, program.schedule)
    with pytest.raises(
        ProgramError, match=r"the schedule ends with the READ pattern \(2, 1, 0, 0\) set"
    ):
        Program(program.config, program.header, program.preamble, schedule, program.blocks)
    reset = _word(Opcode.LOOP, target=0, inner=0, outer=0, inner_stride=0, outer_stride=0)
    items.append((ITEM_WORD, reset, reset, 0, 0, 0))
    Program(program.config, program.header, program.preamble, _arrays(items, program.schedule))
