"""Copies of registers that would drive every lane across the die, a copy a few lanes."""

from amaranth.hdl import Signal

__all__ = ["LANES_PER_COPY", "kept", "lane_groups"]

#: Lanes that one copy of a lane-wide register drives. A single register feeding every
#: lane's logic (a LOAD beat's data into the parameter lanes, the accumulate flag into
#: the read-modify-write) is one net spread over the whole die: the 16x16's worst paths,
#: 14 to 20 ns of which almost all routing (docs/SYNTHESIS.md).
LANES_PER_COPY = 2


def lane_groups(lanes: int) -> list[range]:
    """The lanes ``0 .. lanes - 1`` in groups of :data:`LANES_PER_COPY`, one a copy."""
    return [range(lo, min(lo + LANES_PER_COPY, lanes)) for lo in range(0, lanes, LANES_PER_COPY)]


def kept(shape, name: str, **kwargs) -> Signal:
    """A register that synthesis keeps apart from identical ones (its ``keep`` attribute,
    see :data:`systolic.hw.synth.targets.KEEP_REGISTERS`): one copy of a fan-out."""
    return Signal(shape, name=name, attrs={"keep": 1}, **kwargs)
