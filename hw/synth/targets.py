"""The devices, and what Yosys and nextpnr are told for each family and configuration."""

from ..pe import split_product_shapes
from .techmap import ecp5_mul_commands, ecp5_mul_techmap

__all__ = [
    "KEEP_REGISTERS",
    "PE_MULS",
    "TARGETS",
    "nextpnr_extra",
    "pe_products_in_logic",
    "yosys_files",
    "yosys_script",
]

#: family -> (device, nextpnr device options, DSP blocks, Yosys synthesis command, target MHz)
TARGETS = {
    "ecp5": (
        "LFE5U-85F-6BG381C",
        ["--85k", "--package", "CABGA381", "--speed", "6"],
        156,
        "synth_ecp5 -abc9 -top top",
        100,
    ),
    "ice40": (
        "iCE40UP5K-SG48",
        ["--up5k", "--package", "sg48"],
        8,
        "synth_ice40 -dsp -top top",
        30,
    ),
}


def pe_products_in_logic(family, cfg):
    """Whether the PE products are built in logic rather than DSPs.

    The post-processing needs four 16x16 DSP multiplies a column and each PE one 8x8
    (two with ``split_product``).
    When the DSP blocks left after post-processing do not cover every PE (the UP5K has
    8 DSPs; the 85F 156, short of a 16x16's 320), all PE products go to logic: on the
    ECP5 as rows of carry chains (:func:`ecp5_mul_techmap`), on the iCE40 as Yosys's
    Booth multipliers. Giving the DSPs to as many PEs as they cover (92 of a 16x16's
    256 on the 85F) was tried and routed worse: those PEs are tied to the DSP sites
    spread over the die, and router2 stayed between 15,188 and 16,221 overused wires
    (its iterations 8 to 11) where the all-logic array went from 11,427 to 8,922 (8 to
    10).
    """
    per_pe = len(split_product_shapes(cfg)) if cfg.split_product else 1
    return cfg.rows * cfg.cols * per_pe + 4 * cfg.cols > TARGETS[family][2]


#: Flip-flops of the registers marked ``keep`` get the attribute too. Yosys merges
#: flip-flops with the same input (``opt_merge``), and ``keep`` on the register's wire
#: does not stop it; registers duplicated on purpose, to split a fan-out (the
#: sequencer's per-lane parameter address), would become one again.
KEEP_REGISTERS = "setattr -set keep 1 w:* a:keep %i %ci1:+$dff,$adff[Q]"

#: the PE modules, and their multipliers (selected before flattening)
PES = "top.core.engine.array.pe_*"
PE_MULS = f"{PES}/t:$mul"


def yosys_files(family, cfg):
    """Files the Yosys script reads besides ``top.v``: ``{name: text}``."""
    if family == "ecp5" and pe_products_in_logic(family, cfg):
        if cfg.split_product:
            shapes = split_product_shapes(cfg)
        else:
            shapes = [(cfg.act_bits, cfg.weight_bits, False)]
        return {"pe_mul.v": "".join(ecp5_mul_techmap(n, m, u) for n, m, u in shapes)}
    return {}


def yosys_script(family, cfg):
    """The Yosys commands for one configuration. When :func:`pe_products_in_logic`, the
    PE multipliers are mapped before flattening: on the ECP5 by ``pe_mul.v`` from
    :func:`yosys_files` (and every one must be), on the iCE40 by ``booth``.

    On the ECP5 the PEs are then synthesized as modules of their own (``keep_hierarchy``)
    and flattened into the rest after mapping: ABC9 maps each PE, then the rest, instead
    of the whole flat netlist at once, which on the 16x16 (about 152,000 AND gates)
    needs more memory than the yowasp build has (ABC exits with no message). Every PE
    input and output is a register, so no logic is lost across the boundary."""
    synth_cmd = TARGETS[family][3]
    pre, post = f"hierarchy -top top; proc; {KEEP_REGISTERS}; ", ""
    if pe_products_in_logic(family, cfg):
        if family == "ecp5":  # the map from yosys_files
            pre += f"{ecp5_mul_commands(PE_MULS)}setattr -mod -set keep_hierarchy 1 {PES}; "
            post = (
                f"; setattr -mod -unset keep_hierarchy {PES}; flatten -noscopeinfo; "
                "hierarchy -top top; opt_clean"
            )
        else:
            pre += f"booth {PE_MULS}; "
    if post:
        return (
            f"read_verilog top.v; {pre}{synth_cmd}{post}; write_json top.json; tee -o stat.txt stat"
        )
    return f"read_verilog top.v; {pre}{synth_cmd} -json top.json; tee -o stat.txt stat"


def nextpnr_extra(family, cfg):
    """Extra nextpnr options: router2 on the ECP5, and the static (electrostatic) placer
    where the PE products are in logic.

    On the 8x8 the default router was still at about 1,000 overused wires after 62
    minutes; router2, on the same placement, finished in 131 seconds. On the smallest
    core (2x2, the test suite's whole-flow run) the default router took minutes over
    its last few hundred arcs (548 s for the whole test), router2 39 s. The 16x16's
    carry chains fill about three quarters of the 85F's logic cells: on HeAP's placements
    router2 diverged (seeds 1 to 3, its best 623 overused wires) or took 120
    iterations, where on the static placer's it routed in 37 iterations at seed 1 (34
    minutes for placement and routing against 70 or more). On the 8x8 the static placer
    gave 58.5 to 70.6 MHz at three seeds, within HeAP's spread, so it keeps HeAP."""
    if family != "ecp5":
        return []
    if pe_products_in_logic(family, cfg):
        return ["--router", "router2", "--placer", "static"]
    return ["--router", "router2"]
