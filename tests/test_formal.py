"""Formal proofs of the core's stream contract (sim/formal.py, SymbiYosys with yices).

Every proof passes on every configuration it applies to, and fails on its deliberately
broken variant of the design, naming the property that fails; the bounded liveness
proof with a waiting output fails with its bound a few cycles too small.
"""

import pytest

from systolic.sim import formal

#: The property each broken variant must violate.
VIOLATED = {
    "valid_hiccup": "m_axis_tvalid held until tready",
    "idle_lost": "s_axis_tready low at most stall_bound cycles",
    "write_after_error": "no buffer written for a beat taken while an error is held",
    "status_no_tlast": "status packet: tlast on its last beat only",
    "packet_lost": "frames waiting for a status packet bounded",
}


def _report(result):
    """The result's table line and the end of SymbiYosys's output."""
    with open(result.log) as f:
        tail = f.read().splitlines()[-20:]
    return "\n".join([formal.table([result]), *tail])


#: The long bounded liveness proofs first, so that two workers finish together.
ORDER = sorted(formal.PROOFS, key=lambda proof: not proof.startswith("input_live"))
RUNS = [
    (proof, config) for proof in ORDER for config in formal.CONFIGS if formal.applies(proof, config)
]


@pytest.mark.formal
@pytest.mark.parametrize("proof, config", RUNS)
def test_proof_passes(proof, config, tmp_path):
    result = formal.run(proof, config, root=tmp_path)
    assert result.status == "PASS", _report(result)


@pytest.mark.formal
@pytest.mark.parametrize("fault", list(formal.FAULTS))
def test_broken_variant_fails(fault, tmp_path):
    proof = formal.FAULTS[fault].breaks
    result = formal.run(proof, "2x2-deep", fault, root=tmp_path)
    assert result.status == "FAIL", _report(result)
    assert VIOLATED[fault] in result.failed, _report(result)


@pytest.mark.formal
def test_stall_bound_too_small_fails(tmp_path):
    # the longest stall with the output ready every WAIT_EVERY cycles is within
    # TOO_SMALL cycles of the bound: the bound is not vacuous
    result = formal.run("input_live_wait", "2x2-shallow", root=tmp_path, bound_cut=formal.TOO_SMALL)
    assert result.status == "FAIL", _report(result)
    assert "s_axis_tready low at most stall_bound cycles" in result.failed, _report(result)


def test_every_fault_breaks_a_proof():
    assert set(VIOLATED) == set(formal.FAULTS)
    # input_live_wait: the bound cut by TOO_SMALL cycles instead
    broken = {fault.breaks for fault in formal.FAULTS.values()}
    assert broken == set(formal.PROOFS) - {"input_live_wait"}


def test_stall_bound_from_the_configuration():
    cfg = formal.CONFIGS["2x2-deep"]
    # 3 instructions of 2 rows (1 beat each, ready every 2 cycles) and the 12-cycle
    # post-processing drain; 6 status beats; the input buffer
    assert formal.stall_bound(cfg, max_rows=2, ready_every=2) == 3 * (4 + 12 + 1) + 12 + 2
    shallow = formal.CONFIGS["2x2-shallow"]
    # the 8-cycle array drain is the longer one there
    assert formal.stall_bound(shallow, max_rows=1, ready_every=1) == 3 * (1 + 8 + 1) + 6 + 1
    # input_live_wait: 2 rows of 1 beat, ready every 2 cycles
    assert formal.stall_bound(shallow, ready_every=formal.WAIT_EVERY) == 3 * (4 + 8 + 1) + 12 + 1
    assert formal.PROOFS["input_live_wait"].plan(shallow) == ("bmc", 52 + 10)
    assert formal.PROOFS["input_live_wait"].plan(cfg) is None


def test_write_gives_the_design_and_the_sby_file(tmp_path):
    folder = formal.write("error_sticky", "3x2-shallow", root=tmp_path)
    sby = (folder / "error_sticky.sby").read_text()
    assert "mode prove\ndepth 6\n" in sby and "smtbmc --nopresat yices" in sby
    design = (folder / "design.il").read_text()
    assert "no buffer written for a beat taken while an error is held" in design
    broken = formal.write("error_sticky", "3x2-shallow", "write_after_error", root=tmp_path)
    assert "mode bmc\n" in (broken / "error_sticky.sby").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("nope", "2x2-deep"),
            "proof must be one of axis_out, input_live, input_live_wait, "
            "error_sticky, status_frame, not 'nope'",
        ),
        (
            ("input_live_wait", "2x2-deep"),
            "proof input_live_wait does not apply to configuration 2x2-deep",
        ),
        (("axis_out", "9x9"), "configuration must be one of .*, not '9x9'"),
        (("axis_out", "2x2-deep", "nope"), "fault must be one of .*, not 'nope'"),
    ],
)
def test_write_rejects_unknown_names(args, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        formal.write(*args, root=tmp_path)
