"""Launch the cocotb benches (sim/) on Verilator from pytest."""

import pytest

from systolic.sim import runner

pytestmark = pytest.mark.rtl


def test_core_benches(sim_config):
    """Every whole-core bench passes: random matmuls, corners, errors, reset, player."""
    tests, failed = runner.run(sim_config, module="systolic.sim.test_core", check=False)
    assert tests >= 8 and failed == 0, f"{failed} of {tests} core benches failed"


@pytest.mark.parametrize("unit", runner.UNITS)
def test_unit_benches(sim_config, unit):
    """The PE, the array and post-processing against numpy, randomized; post-processing
    also as the ECP5 netlist has it (its multiplies DSP blocks with their registers, in
    the model sim/hdl/mult18x18d.v), and both modes of that multiply on their own."""
    tests, failed = runner.run_unit(sim_config, unit, check=False)
    assert tests >= 1 and failed == 0, f"{failed} of {tests} {unit} benches failed"
