"""Backend options are checked by name and value; nothing is dropped or clamped."""

import re

import pytest

from systolic.host.backends import BackendError, get_backend
from systolic.host.backends.rtl import MAX_PAUSE_PROBABILITY, RtlBackend
from systolic.hw.config import CoreConfig


def test_model_backend_takes_no_options():
    with pytest.raises(BackendError, match="the model backend takes no options; not gap"):
        get_backend("model", CoreConfig(), gap=0.1)
    with pytest.raises(BackendError, match="the model backend takes no options; not seed, sim"):
        get_backend("model", CoreConfig(), sim="verilator", seed=3)


@pytest.mark.parametrize("name", ["rtl", "gate"])
def test_unknown_rtl_option(name):
    with pytest.raises(
        BackendError, match=f"the {name} backend takes only sim, gap, stall, seed; not gapp"
    ):
        get_backend(name, CoreConfig(), gapp=0.1)


@pytest.mark.parametrize("option", ["gap", "stall"])
@pytest.mark.parametrize(
    "value", [1.0, 0.99, 0.91, -0.5, float("nan"), float("inf"), "0.1", True, None]
)
def test_pause_probabilities_out_of_range(option, value):
    with pytest.raises(
        BackendError,
        match=re.escape(
            f"rtl backend: {option} must be a probability in [0, {MAX_PAUSE_PROBABILITY}], "
            f"not {value!r}"
        ),
    ):
        RtlBackend(CoreConfig(), **{option: value})


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "7", False])
def test_seed_out_of_range(seed):
    with pytest.raises(
        BackendError,
        match=re.escape(f"rtl backend: seed must be an integer in [0, 2**32), not {seed!r}"),
    ):
        RtlBackend(CoreConfig(), seed=seed)


def test_pause_probabilities_in_range_are_kept():
    rtl = get_backend("rtl", CoreConfig(), gap=MAX_PAUSE_PROBABILITY, stall=0, seed=2**32 - 1)
    assert (rtl.gap, rtl.stall, rtl.seed) == (0.9, 0.0, 2**32 - 1)
    # the harness's 8-bit pause level: the largest accepted value still fits
    assert int(MAX_PAUSE_PROBABILITY * 256) <= 255


def test_unknown_simulator_is_a_backend_error():
    with pytest.raises(BackendError, match="unknown simulator 'xsim'"):
        get_backend("rtl", CoreConfig(), sim="xsim")
