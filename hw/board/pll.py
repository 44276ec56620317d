"""ECP5 PLL (EHXPLLL) divider settings, chosen as Project Trellis's ``ecppll`` chooses them."""

__all__ = ["ecp5_pll"]

#: EHXPLLL limits (MHz): phase detector input and VCO.
PFD_RANGE = (3.125, 400.0)
VCO_RANGE = (400.0, 800.0)


def ecp5_pll(fin_mhz, fout_mhz):
    """Dividers that make ``fout_mhz`` from ``fin_mhz`` with feedback from CLKOP.

    Returns ``{"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE", "vco_mhz", "fout_mhz"}``:
    the exact output, else the nearest, the VCO nearest 600 MHz among equals (as
    ``ecppll -i 25 -o 30`` gives 5, 6, 20 and phase 9).

    Raises
    ------
    ValueError
        When no setting comes within 0.01 MHz of ``fout_mhz``.
    """
    best = None
    for input_div in range(1, 129):
        pfd = fin_mhz / input_div
        if not PFD_RANGE[0] <= pfd <= PFD_RANGE[1]:
            continue
        for feedback_div in range(1, 81):
            fout = pfd * feedback_div
            for output_div in range(1, 129):
                vco = fout * output_div
                if not VCO_RANGE[0] <= vco <= VCO_RANGE[1]:
                    continue
                key = (abs(fout - fout_mhz), abs(vco - 600))
                if best is None or key < best[0]:
                    best = (key, input_div, feedback_div, output_div, vco, fout)
    if best is None or best[0][0] > 0.01:
        near = "none" if best is None else f"{best[5]:g} MHz"
        raise ValueError(
            f"the ECP5 PLL cannot make {fout_mhz:g} MHz from {fin_mhz:g} MHz (nearest: {near})"
        )
    _, input_div, feedback_div, output_div, vco, fout = best
    return {
        "CLKI_DIV": input_div,
        "CLKFB_DIV": feedback_div,
        "CLKOP_DIV": output_div,
        "CLKOP_CPHASE": (output_div - 1) // 2,
        "vco_mhz": vco,
        "fout_mhz": fout,
    }
