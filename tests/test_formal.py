"""Formal proofs of the core's stream contract (sim/formal.py, SymbiYosys with yices).

Every proof passes on every configuration, and fails on its deliberately broken
variant of the design, naming the property that fails.
"""

import pytest

from sim import formal

#: The property each broken variant must violate.
VIOLATED = {
    "valid_hiccup": "m_axis_tvalid held until tready",
    "idle_lost": "s_axis_tready low at most stall_bound cycles",
    "write_after_error": "no buffer written while an error is held",
    "status_no_tlast": "status packet: tlast on its last beat only",
    "packet_lost": "frames waiting for a status packet bounded",
}


def _report(result):
    """The result's table line and the end of SymbiYosys's output."""
    with open(result.log) as f:
        tail = f.read().splitlines()[-20:]
    return "\n".join([formal.table([result]), *tail])


#: The long bounded liveness proof first, so that two workers finish together.
ORDER = sorted(formal.PROOFS, key=lambda proof: proof != "input_live")


@pytest.mark.formal
@pytest.mark.parametrize("config", list(formal.CONFIGS))
@pytest.mark.parametrize("proof", ORDER)
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


def test_every_fault_breaks_a_proof():
    assert set(VIOLATED) == set(formal.FAULTS)
    assert {fault.breaks for fault in formal.FAULTS.values()} == set(formal.PROOFS)


def test_stall_bound_from_the_configuration():
    cfg = formal.CONFIGS["2x2-deep"]
    # 3 instructions of 2 rows (1 beat each, ready every 2 cycles) and the 11-cycle
    # post-processing drain; 6 status beats; the input buffer
    assert formal.stall_bound(cfg, max_rows=2, ready_every=2) == 3 * (4 + 11 + 1) + 12 + 2
    shallow = formal.CONFIGS["2x2-shallow"]
    # the 8-cycle array drain is the longer one there
    assert formal.stall_bound(shallow, max_rows=1, ready_every=1) == 3 * (1 + 8 + 1) + 6 + 1


def test_write_gives_the_design_and_the_sby_file(tmp_path):
    folder = formal.write("error_sticky", "3x2-shallow", root=tmp_path)
    sby = (folder / "error_sticky.sby").read_text()
    assert "mode prove\ndepth 4\n" in sby and "smtbmc --nopresat yices" in sby
    design = (folder / "design.il").read_text()
    assert "no buffer written while an error is held" in design
    broken = formal.write("error_sticky", "3x2-shallow", "write_after_error", root=tmp_path)
    assert "mode bmc\n" in (broken / "error_sticky.sby").read_text()


@pytest.mark.parametrize("args, message", [
    (("nope", "2x2-deep"), "proof must be one of axis_out, input_live, error_sticky, "
                           "status_frame, not 'nope'"),
    (("axis_out", "9x9"), "configuration must be one of .*, not '9x9'"),
    (("axis_out", "2x2-deep", "nope"), "fault must be one of .*, not 'nope'"),
])
def test_write_rejects_unknown_names(args, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        formal.write(*args, root=tmp_path)
