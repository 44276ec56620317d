"""The program file: round trip, and every way a program is refused."""

import struct

import numpy as np
import pytest

from hw import isa
from hw.config import CoreConfig
from host.backends import get_backend
from host.compiler import compile
from host.program import MAGIC, Program, ProgramError
from host.quantize import random_quantized_model


@pytest.fixture(scope="module")
def program():
    return compile(random_quantized_model((40, 12, 6), seed=2), CoreConfig(rows=4, cols=4), 8)


def test_round_trip(program, tmp_path):
    path = tmp_path / "net.prog"
    program.save(str(path))
    again = Program.load(str(path), CoreConfig(rows=4, cols=4))
    x = np.random.default_rng(0).integers(-128, 128, (19, 40)).astype(np.int8)
    np.testing.assert_array_equal(program.beats(x), again.beats(x))
    assert again.header == program.header


def test_refused(program, tmp_path):
    path = tmp_path / "net.prog"
    program.save(str(path))
    blob = path.read_bytes()
    cases = {
        "truncated": (blob[:len(blob) // 2], "truncated or corrupt"),
        "short": (blob[:10], "truncated header"),
        "magic": (b"NOTAPROG" + blob[8:], "bad magic number"),
        "version": (MAGIC + struct.pack("<H", 99) + blob[10:], "format version 99"),
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


def test_unknown_opcode_refused(program):
    schedule = dict(program.schedule)
    schedule["even"] = schedule["even"].copy()
    schedule["even"][np.flatnonzero(schedule["kind"] == 0)[0]] = 0xE
    with pytest.raises(ProgramError, match="unknown opcode 14"):
        Program(program.config, program.header, program.preamble, schedule)


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
