"""A multiply that synthesis for the ECP5 builds in one DSP block with its own registers."""

from amaranth.hdl import ClockSignal, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DSP_BITS", "RegisteredMultiply", "SynthTarget", "ecp5_dsp"]

#: Operand bits of the ECP5's MULT18X18D.
DSP_BITS = 18


class SynthTarget:
    """What the synthesis flow passes to ``elaborate`` as its platform: only the FPGA
    family (as Amaranth's vendor platforms name theirs), for the parts of the core built
    from a family's primitives (:class:`RegisteredMultiply`)."""

    def __init__(self, family: str):
        self.family = family


def ecp5_dsp(platform) -> bool:
    """Whether ``platform`` (an Amaranth vendor platform, a :class:`SynthTarget` or None)
    is an ECP5, whose DSP blocks :class:`RegisteredMultiply` instantiates."""
    return getattr(platform, "family", None) == "ecp5"


class RegisteredMultiply(wiring.Component):
    """``p = a * b`` (unsigned) of the operands two enabled cycles before: the operands
    are registered, then their product (with ``input_registers=False``, one enabled cycle
    before: only the product is registered).

    On the ECP5 (:func:`ecp5_dsp`) this is one MULT18X18D with its input registers and its
    output register in use (``REG_INPUTA_CLK``, ``REG_INPUTB_CLK``, ``REG_OUTPUT_CLK`` on
    ``CLK0``, ``en`` as ``CE0``). Yosys maps a multiply onto the block's combinational
    path only and leaves both registers in the fabric, so every product was a route from a
    register to the block, the multiplier and a route back: the 8x8's slowest nets were
    post-processing's DSP outputs (13.3 ns, 4.3 ns of routing in and 4.5 ns out). With
    the block's registers the routes end and start at the block. Without the input
    registers (``REG_INPUTA_CLK`` and ``REG_INPUTB_CLK`` ``NONE``) only the route out
    ends. Elsewhere (simulation, the gate-level netlist, the iCE40) the same registers
    and product in Amaranth.

    Members
    -------
    a, b : In(unsigned)
        The operands (at most :data:`DSP_BITS` bits each), taken when ``en`` is high.
    en : In(1)
        Clock enable of both stages.
    p : Out(unsigned(a_bits + b_bits))
        The product of the operands taken two enabled cycles earlier.
    """

    def __init__(self, a_bits: int, b_bits: int, input_registers: bool = True):
        if not (0 < a_bits <= DSP_BITS and 0 < b_bits <= DSP_BITS):
            raise ValueError(f"operands of {a_bits} and {b_bits} bits: at most {DSP_BITS} each")
        self._input_registers = input_registers
        super().__init__({"a": In(a_bits), "b": In(b_bits), "en": In(1), "p": Out(a_bits + b_bits)})

    def elaborate(self, platform):
        m = Module()
        if ecp5_dsp(platform):
            p = Signal(2 * DSP_BITS)
            ports = {f"i_A{i}": self.a[i] if i < len(self.a) else 0 for i in range(DSP_BITS)}
            ports.update({f"i_B{i}": self.b[i] if i < len(self.b) else 0 for i in range(DSP_BITS)})
            ports.update({f"i_C{i}": 0 for i in range(DSP_BITS)})
            ports.update({f"o_P{i}": p[i] for i in range(2 * DSP_BITS)})
            registers = ("INPUTA", "INPUTB", "OUTPUT") if self._input_registers else ("OUTPUT",)
            clocked = {
                f"p_REG_{r}_{s}": f"{s}0" if r in registers or s != "CLK" else "NONE"
                for r in ("INPUTA", "INPUTB", "OUTPUT")
                for s in ("CLK", "CE", "RST")
            }
            m.submodules.dsp = Instance(
                "MULT18X18D",
                **clocked,
                i_CLK0=ClockSignal(),
                i_CE0=self.en,
                i_RST0=0,
                i_SIGNEDA=0,
                i_SIGNEDB=0,
                i_SOURCEA=0,
                i_SOURCEB=0,
                **ports,
            )
            m.d.comb += self.p.eq(p)
        else:
            a, b = self.a, self.b
            p = Signal.like(self.p, name="p_reg", reset_less=True)
            if self._input_registers:
                a = Signal.like(self.a, name="a_reg", reset_less=True)
                b = Signal.like(self.b, name="b_reg", reset_less=True)
                with m.If(self.en):
                    m.d.sync += [a.eq(self.a), b.eq(self.b)]
            with m.If(self.en):
                m.d.sync += p.eq(a * b)
            m.d.comb += self.p.eq(p)
        return m
