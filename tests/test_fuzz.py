"""Random raw programs, every backend against the others (see ``sim/fuzz.py``).

rtl == model byte for byte (result beats, status packet, cycles) for every array shape
of the simulation set in both pipeline variants, gate == model on a few. Seeded: a
failure names the seed and the program; ``FUZZ_SEED=<n>`` reruns another seed.
"""

import dataclasses
import os

import numpy as np
import pytest

from systolic.host.backends.model import Machine
from systolic.host.backends.model.cycles import predict
from systolic.host.compile.program import beat_words, status_packet
from systolic.hw import isa
from systolic.hw.isa import STATUS_FIELDS, ErrorCode, LoopTarget, Opcode
from systolic.sim import runner
from systolic.sim.fuzz import FAULTS, random_programs

from .conftest import SIM_CONFIGS

SEED = int(os.environ.get("FUZZ_SEED", 2026))

#: Every shape of the simulation set with both pipeline variants, the other variant with
#: the PE products split in halves (``CoreConfig.split_product``).
FUZZ_CONFIGS = {
    **SIM_CONFIGS,
    **{
        f"{name}-{'shallow' if cfg.deep_pipeline else 'deep'}-split": dataclasses.replace(
            cfg, deep_pipeline=not cfg.deep_pipeline, split_product=True
        )
        for name, cfg in SIM_CONFIGS.items()
    },
}


def _compare(cfg, programs, kind="rtl", sources=None, seed=SEED):
    """Stream every program in one simulator run; compare with the model program by
    program (buffers persist from one program to the next in both)."""
    results = runner.stream_programs(
        cfg, [beats for _, beats in programs], kind=kind, sources=sources
    )
    machine = Machine(cfg)
    errors = set()
    for i, ((fault, beats), (out, _)) in enumerate(zip(programs, results)):
        want, status = machine.run(beats)
        where = f"{kind} {cfg.tag}, seed {seed}, program {i} (fault {fault}, {len(beats)} beats)"
        np.testing.assert_array_equal(out, want, err_msg=where, strict=True)
        assert status["cycles"] == predict(cfg, beats)["cycles"], where
        errors.add(ErrorCode(status["error"]))
    return errors


@pytest.mark.rtl
@pytest.mark.parametrize("name", sorted(FUZZ_CONFIGS))
def test_random_programs_rtl_equals_model(name):
    cfg = FUZZ_CONFIGS[name]
    programs = random_programs(cfg, SEED, 240)
    errors = _compare(cfg, programs)
    # the generator reaches every outcome: no error, and each kind of refusal
    assert errors >= {
        ErrorCode.NONE,
        ErrorCode.BAD_OPCODE,
        ErrorCode.NO_END,
        ErrorCode.END_NOT_LAST,
        ErrorCode.BAD_LOOP,
        ErrorCode.BAD_POOL,
    }, errors
    assert len(errors) >= 8, errors


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUZZ_CONFIGS))
def test_random_programs_rtl_equals_model_thousands(name):
    cfg = FUZZ_CONFIGS[name]
    for seed in range(SEED + 1, SEED + 11):
        _compare(cfg, random_programs(cfg, seed, 400), seed=seed)


@pytest.mark.rtl
@pytest.mark.parametrize("name", ["4x4", "3x5"])
def test_random_programs_under_gaps_and_backpressure(name):
    """Input gaps and output backpressure (deep pipeline: the credit-issued row FIFO;
    shallow: the held pipeline) change when things happen, never what: the same result
    beats and error code as the model, never a hang, and at least the predicted cycles."""
    cfg = FUZZ_CONFIGS[name]
    programs = random_programs(cfg, SEED + 1000, 80)
    results = runner.stream_programs(
        cfg, [beats for _, beats in programs], gap=0.3, stall=0.5, seed=SEED
    )
    machine = Machine(cfg)
    n = len(STATUS_FIELDS)
    stalled = 0
    for i, ((fault, beats), (out, _)) in enumerate(zip(programs, results)):
        want, status = machine.run(beats)
        where = f"{cfg.tag}, seed {SEED + 1000}, program {i} (fault {fault})"
        np.testing.assert_array_equal(out[:-n], want[:-n], err_msg=where, strict=True)
        got = status_packet(out)
        assert got["error"] == status["error"], where
        assert got["cycles"] >= status["cycles"], where
        if status["error"] == 0:
            assert got["mac_cycles"] == status["mac_cycles"], where
        stalled += got["stall_in_cycles"] > 0 and got["stall_out_cycles"] > 0
    assert stalled > len(programs) // 4  # the pauses really happened


@pytest.mark.gate
def test_random_programs_gate_equals_model():
    from systolic.sim.gate import gate_config, gate_sources

    cfg = gate_config(4, 4)
    _compare(cfg, random_programs(cfg, SEED, 24), kind="gate", sources=gate_sources(cfg))


def test_generator_is_seeded_and_covers_every_fault():
    cfg = SIM_CONFIGS["3x5"]
    a, b = random_programs(cfg, 5, 60), random_programs(cfg, 5, 60)
    assert all(fa == fb and np.array_equal(pa, pb) for (fa, pa), (fb, pb) in zip(a, b))
    assert {f for f, _ in a} == {None, *FAULTS}


def _instructions(beats):
    """The instructions a frame's beats decode to (LOAD data and noise included)."""
    for word in beat_words(beats):
        try:
            yield isa.decode(int(word))
        except isa.InstructionError:
            pass


@pytest.mark.parametrize("name", sorted(SIM_CONFIGS))
def test_generator_reaches_loops_pool_and_their_refusals(name):
    """The programs set and reset both patterns, run MATMULs and POSTPROCs under them,
    pool, step MATMULs through weight tiles, and end with each LOOP/pool refusal (as the
    model sees them)."""
    cfg = SIM_CONFIGS[name]
    programs = random_programs(cfg, SEED, 240)
    machine = Machine(cfg)
    errors = {}
    for fault, beats in programs:
        status = machine.run(beats)[1]
        assert status == predict(cfg, beats)
        errors.setdefault(fault, set()).add(ErrorCode(status["error"]))
    assert errors["pattern"] == {ErrorCode.BAD_LOOP, ErrorCode.ACT_RANGE, ErrorCode.BAD_POOL}
    assert errors[None] == {ErrorCode.NONE}
    seen = set()
    for fault, beats in programs:
        if fault is not None:
            continue
        for op, f in _instructions(beats):
            if op is Opcode.LOOP:
                seen.add((LoopTarget(f["target"]), f["inner"] > 0))
            elif op is Opcode.POSTPROC and f["pool"]:
                seen.add("pool")
            elif op is Opcode.MATMUL and f["tile_step"] and f["m"] > 1:
                seen.add("tile_step")
    assert seen == {"pool", "tile_step", *((t, s) for t in LoopTarget for s in (False, True))}
