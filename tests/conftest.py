"""Shared pytest fixtures and helpers."""

import pytest

from systolic.host.nn.data import load_mnist
from systolic.hw.config import CoreConfig

#: Configurations the benches run on: square, the default, and non-square. Buffers are
#: kept small so that the simulator builds stay quick.
SIM_CONFIGS = {
    "4x4": CoreConfig(rows=4, cols=4, act_kib=16, weight_kib=16, acc_kib=8),
    "8x8": CoreConfig(rows=8, cols=8, act_kib=16, weight_kib=16, acc_kib=8),
    # non-square, and the shallow post-processing pipeline
    "3x5": CoreConfig(rows=3, cols=5, act_kib=16, weight_kib=16, acc_kib=8, deep_pipeline=False),
}


@pytest.fixture(params=sorted(SIM_CONFIGS), ids=str)
def sim_config(request):
    return SIM_CONFIGS[request.param]


#: Test tiers (markers registered in pyproject.toml). A test without one of them is a
#: ``unit`` test: Python and numpy only, or amaranth.sim, no external tool.
TIERS = ("unit", "rtl", "gate", "synth", "formal", "slow")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def mnist():
    """The embedded MNIST subset (4,000 training and 1,000 test images)."""
    return load_mnist()
