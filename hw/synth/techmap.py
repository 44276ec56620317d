"""The ECP5 PE multiplier as a tree of carry chains: a Yosys techmap for ``$mul``.

Used when the DSP blocks do not cover every PE
(:func:`systolic.hw.synth.targets.pe_products_in_logic`):
one LUT4 a product bit inside ``CCU2C`` carry cells, against about three for Yosys's
Booth multiplier built from LUT full adders. ``tests/test_synth.py`` proves the map
equal to a signed ``$mul`` with Yosys's own ECP5 simulation models.
"""

import itertools

__all__ = ["ecp5_mul_commands", "ecp5_mul_techmap"]


def _lut_init(fn):
    """INIT of a LUT4 computing ``fn(A, B, C, D)`` (bit ``8*D + 4*C + 2*B + A``)."""
    return sum(
        fn(a, b, c, d) << (8 * d + 4 * c + 2 * b + a)
        for a, b, c, d in itertools.product((0, 1), repeat=4)
    )


# A CCU2C half adds two bits x and y: its LUT4 gives the propagate x ^ y, and when that
# is 0 the carry out is its LUT2, i.e. the LUT4's truth table at C = D = 0, which must
# then equal x (= y). Partial products are formed inside the LUT4:
#: x = A & B, y = C & D (two partial-product rows at once)
_FIRST = _lut_init(lambda a, b, c, d: (a & b) ^ (c & d))
#: x = ~A & B, y = C & D: the weight's sign row, negated (with a carry in of its bit)
_SUB = _lut_init(lambda a, b, c, d: ((1 - a) & b) ^ (c & d))
#: x = A, y = B (C and D tied to 1): a plain adder bit
_ADD = _lut_init(lambda a, b, c, d: a ^ (b & c) if d else a)


def ecp5_mul_techmap(n, m):
    """Yosys techmap file: a signed ``n`` x ``m`` ``$mul`` as a tree of ECP5 carry chains.

    Row ``i`` of the product is ``a & w[i]`` at bit ``i``; the weight's sign row is
    ``-(a & w[m-1])``, added as ``~a & w[m-1]`` plus ``w[m-1]``. The first level adds the
    rows in pairs, each pair in one ``n + 2``-bit chain with the ANDs inside the adder's
    LUT4s (one LUT a bit); then the pair sums are added two at a time, a chain each,
    until one is left. An 8x8 product is three chains deep (four pairs, two sums, one)
    instead of seven for rows added one after another, with about as many LUTs.
    """
    body = []

    def chain(name, bits, cin):
        body.append(f"    wire [{len(bits) - 1}:0] {name};")
        prev = cin
        for j in range(0, len(bits), 2):
            halves = []
            for h in range(2):
                if j + h < len(bits):
                    ins, init = bits[j + h]
                    halves.append((ins, init, f"{name}[{j + h}]"))
                else:
                    halves.append((("1'b0",) * 4, 0, ""))
            ports = ", ".join(
                f".A{h}({ins[0]}), .B{h}({ins[1]}), .C{h}({ins[2]}), .D{h}({ins[3]}), .S{h}({s})"
                for h, (ins, _, s) in enumerate(halves)
            )
            body.append(f"    wire {name}_co{j};")
            body.append(
                f"    CCU2C #(.INIT0(16'h{halves[0][1]:04x}), "
                f'.INIT1(16\'h{halves[1][1]:04x}), .INJECT1_0("NO"), '
                f'.INJECT1_1("NO")) {name}_{j} (.CIN({prev}), {ports}, '
                f".COUT({name}_co{j}));"
            )
            prev = f"{name}_co{j}"
        return [f"{name}[{p}]" for p in range(len(bits))]

    def a(k):  # the activation, sign-extended
        return f"A[{min(k, n - 1)}]"

    sign = m - 1
    # level 1: (first row, its bits, its width) of each group of one or two rows
    groups = []
    for lo in range(0, m, 2):
        hi = lo + 1
        if hi < m:  # rows lo and hi (hi shifted by one) in one chain of n + 2 bits
            neg = hi == sign
            bits = []
            for p in range(n + 2):
                if p == 0:  # hi has no bit here; the sign row's +w comes in here twice
                    x = (f"B[{hi}]", "1'b1") if neg else ("1'b0", "1'b0")
                else:
                    x = (a(p - 1), f"B[{hi}]")
                init = _SUB if neg and p else _FIRST
                bits.append(((*x, a(p), f"B[{lo}]"), init))
            groups.append((lo, chain(f"g{lo}", bits, f"B[{hi}]" if neg else "1'b0"), n + 2))
        else:  # the sign row alone: ~a & w plus w, n + 1 bits
            bits = [((a(p), f"B[{lo}]", "1'b0", "1'b0"), _SUB) for p in range(n + 1)]
            groups.append((lo, chain(f"g{lo}", bits, f"B[{lo}]"), n + 1))
    # then adjacent groups two at a time: the low one's bits below the high one's first
    # row pass through, the rest is one chain (rows r0..r1 need n + r1 - r0 + 1 bits)
    level = 1
    while len(groups) > 1:
        merged = []
        for i in range(0, len(groups), 2):
            if i + 1 == len(groups):
                merged.append(groups[i])
                continue
            (f0, s0, w0), (f1, s1, w1) = groups[i], groups[i + 1]
            d = f1 - f0  # rows in the low group
            width = n + d + (w1 - n)
            bits = [
                ((s0[min(p + d, w0 - 1)], s1[min(p, w1 - 1)], "1'b1", "1'b1"), _ADD)
                for p in range(width - d)
            ]
            merged.append((f0, s0[:d] + chain(f"l{level}_{f0}", bits, "1'b0"), width))
        groups, level = merged, level + 1
    _, s, width = groups[0]
    assert width == n + m
    return "\n".join(
        [
            '(* techmap_celltype = "$mul" *)',
            f"module _ecp5_mul_{n}x{m} (A, B, Y);",
            "    parameter A_SIGNED = 0;",
            "    parameter B_SIGNED = 0;",
            f"    parameter A_WIDTH = {n};",
            f"    parameter B_WIDTH = {m};",
            f"    parameter Y_WIDTH = {n + m};",
            "    input [A_WIDTH-1:0] A;",
            "    input [B_WIDTH-1:0] B;",
            "    output [Y_WIDTH-1:0] Y;",
            "    wire _TECHMAP_FAIL_ = "
            f"!(A_SIGNED && B_SIGNED && A_WIDTH == {n} && B_WIDTH == {m});",
            *body,
            f"    wire signed [{n + m - 1}:0] product = {{{', '.join(reversed(s))}}};",
            "    assign Y = product;",
            "endmodule",
            "",
        ]
    )


def ecp5_mul_commands(selection):
    """Yosys commands mapping the ``$mul`` cells in ``selection`` with ``pe_mul.v``: first
    trimmed to their operands' widths (Verilog's signed product of 8-bit operands into 16
    bits reads as a 16x16 multiply of sign-extended operands), then all mapped, or an
    error."""
    return (
        f"wreduce {selection}; techmap -map pe_mul.v {selection}; select -assert-none {selection}; "
    )
