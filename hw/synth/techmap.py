"""The ECP5 PE multiplier as rows of carry chains: a Yosys techmap for ``$mul``.

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
#: x = A & B, y = C & D (the two lowest rows together)
_FIRST = _lut_init(lambda a, b, c, d: (a & b) ^ (c & d))
#: x = A (running sum), y = B & C (activation bit AND weight bit); D tied to 1
_ADD = _lut_init(lambda a, b, c, d: a ^ (b & c) if d else a)
#: as _ADD with y = ~B & C: the sign row adds ~a (and a carry in of the weight's sign bit)
_SUB = _lut_init(lambda a, b, c, d: a ^ ((1 - b) & c) if d else a)


def ecp5_mul_techmap(n, m, unsigned_b=False):
    """Yosys techmap module: a signed ``n`` x ``m`` ``$mul`` as rows of ECP5 carry chains.

    Row ``i`` adds ``a & w[i]`` at bit ``i`` to the running sum in one ``n + 1``-bit
    chain, the AND inside the adder's LUT4 (one LUT per bit, against about three for
    Yosys's Booth multiplier built from LUT full adders); the weight's sign row adds
    ``~a & w[m-1]`` with carry in ``w[m-1]``, which is ``-a * w[m-1]``.

    ``unsigned_b``: ``b`` is an unsigned ``m``-bit value, which reaches the ``$mul`` as
    Verilog writes a signed times an unsigned operand: ``m + 1`` bits, the top one a
    constant 0 (Yosys's ``_TECHMAP_CONSTMSK_``/``_TECHMAP_CONSTVAL_`` check it). Its
    rows all add; there is no sign row. Maps can be concatenated into one file: Yosys
    takes the first that does not fail.
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

    def a(k):
        return f"A[{min(k, n - 1)}]"

    if m >= 3:
        chain(
            "r1",
            [((a(p - 1) if p else "1'b0", "B[1]", a(p), "B[0]"), _FIRST) for p in range(n + 2)],
            "1'b0",
        )
        s, start = [f"r1[{p}]" for p in range(n + 2)], 2
    else:
        body.append(f"    wire [{n - 1}:0] r0 = A & {{{n}{{B[0]}}}};")
        s, start = [f"r0[{k}]" for k in range(n)], 1
    for i in range(start, m):
        last = i == m - 1 and not unsigned_b
        chain(
            f"r{i}",
            [
                ((s[min(i + k, len(s) - 1)], a(k), f"B[{i}]", "1'b1"), _SUB if last else _ADD)
                for k in range(n + 1)
            ],
            f"B[{m - 1}]" if last else "1'b0",
        )
        s = s[:i] + [f"r{i}[{k}]" for k in range(n + 1)]
    assert len(s) == n + m
    b_width = m + 1 if unsigned_b else m
    check = f"A_SIGNED && B_SIGNED && A_WIDTH == {n} && B_WIDTH == {b_width}"
    params = []
    if unsigned_b:
        check += f" && _TECHMAP_CONSTMSK_B_[{m}] && !_TECHMAP_CONSTVAL_B_[{m}]"
        params = [
            "    parameter _TECHMAP_CONSTMSK_B_ = 0;",
            "    parameter _TECHMAP_CONSTVAL_B_ = 0;",
        ]
    return "\n".join(
        [
            '(* techmap_celltype = "$mul" *)',
            f"module _ecp5_mul_{n}x{m}{'u' if unsigned_b else ''} (A, B, Y);",
            "    parameter A_SIGNED = 0;",
            "    parameter B_SIGNED = 0;",
            f"    parameter A_WIDTH = {n};",
            f"    parameter B_WIDTH = {b_width};",
            f"    parameter Y_WIDTH = {n + m};",
            *params,
            "    input [A_WIDTH-1:0] A;",
            "    input [B_WIDTH-1:0] B;",
            "    output [Y_WIDTH-1:0] Y;",
            f"    wire _TECHMAP_FAIL_ = !({check});",
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
