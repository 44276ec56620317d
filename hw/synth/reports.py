"""Figures read back from nextpnr's JSON report, its log and Yosys's ``stat``; the table."""

import re

__all__ = ["critical_path", "parse_log_utilization", "parse_report", "slow_nets", "table"]

#: Nets listed by :func:`slow_nets`.
SLOW_NETS = 10


def parse_report(report, family):
    """Resources and Fmax from nextpnr's ``--report`` JSON (a dict)."""
    util = report.get("utilization", {})

    def used(*names):
        return sum(util.get(n, {}).get("used", 0) for n in names)

    def avail(*names):
        return sum(util.get(n, {}).get("available", 0) for n in names)

    if family == "ecp5":
        luts, ffs = used("TRELLIS_COMB"), used("TRELLIS_FF")
        dsps, brams = used("MULT18X18D"), used("DP16KD")
        fits = all(used(n) <= avail(n) for n in util)
    else:
        luts, ffs = used("ICESTORM_LC"), None  # logic cells; FFs come from Yosys's stat
        dsps, brams = used("ICESTORM_DSP"), used("ICESTORM_RAM") + used("ICESTORM_SPRAM")
        fits = all(used(n) <= avail(n) for n in util)
    fmax = report.get("fmax", {})
    achieved = [v.get("achieved") for v in fmax.values() if v.get("achieved")]
    return {
        "luts": luts,
        "ffs": ffs,
        "dsps": dsps,
        "brams": brams,
        "fmax_mhz": round(min(achieved), 2) if achieved else None,
        "fits": fits,
        "critical_path": critical_path(report),
        **({"slow_nets": slow_nets(report)} if "detailed_net_timings" in report else {}),
    }


def critical_path(report):
    """The worst clock-to-clock path in nextpnr's report: its first and last cell, its
    delay and how much of it is routing (None if the report has no such path)."""
    worst = None
    for p in report.get("critical_paths", []):
        if "<async>" in (p.get("from"), p.get("to")) or not p.get("path"):
            continue
        total = sum(step["delay"] for step in p["path"])
        if worst is None or total > worst["ns"]:
            routing = sum(step["delay"] for step in p["path"] if step["type"] == "routing")
            worst = {
                "from": p["path"][0]["from"]["cell"],
                "to": p["path"][-1]["to"]["cell"],
                "ns": round(total, 2),
                "routing_ns": round(routing, 2),
                "steps": len(p["path"]),
            }
    return worst


def slow_nets(report: dict, count: int = SLOW_NETS) -> list[dict]:
    """The nets into register inputs reached latest after the clock edge, from nextpnr's
    ``--detailed-timing-report``: the last net of the worst paths into ``count``
    different nets, so that one run shows every long net near the critical path, not
    only the worst one. ``[{"net", "driver", "inputs", "arrival_ns"}]``.

    Each input has an arrival (``[min, max]``) a launching clock, without saying which:
    the reset pin, not registered in the synthesis shell and so not timed, launches the
    others. Nets launched from a pin are left out (nextpnr names the launch of a net's
    first input), an input with several arrivals is given the earliest of them, which
    can understate a register's path, and none is above the worst clock-to-clock
    path."""
    worst = critical_path(report)
    bound = worst["ns"] if worst else float("inf")
    late = {}
    for net in report.get("detailed_net_timings", []):
        if net.get("event") == "<async>":
            continue
        arrivals = {}
        for e in net.get("endpoints", []):
            t = e["delay"][-1] if isinstance(e["delay"], list) else e["delay"]
            key = (e["cell"], e["port"])
            arrivals[key] = min(arrivals.get(key, t), t)
        clocked = [t for t in arrivals.values() if t <= bound + 0.005]
        if clocked:
            late[net["net"]] = (max(clocked), net.get("driver"), len(arrivals))
    nets = sorted(late.items(), key=lambda kv: -kv[1][0])[:count]
    return [
        {"net": name, "driver": driver, "inputs": inputs, "arrival_ns": round(t, 2)}
        for name, (t, driver, inputs) in nets
    ]


def parse_log_utilization(log):
    """``{bel: {"used": n, "available": m}}`` from nextpnr's "Device utilisation" lines."""
    util = {}
    pattern = r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%"
    for name, used, avail in re.findall(pattern, log, re.MULTILINE):
        util[name] = {"used": int(used), "available": int(avail)}
    return util


def _stat_ffs(path):
    """Flip-flops in Yosys's ``stat`` output (cells named ``SB_DFF*``/``TRELLIS_FF``)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return sum(
        int(n)
        for n, cell in re.findall(r"^\s+(\d+)\s+(SB_DFF\w*|TRELLIS_FF)\s*$", text, re.MULTILINE)
    )


def _routing_left(log):
    """Overused wires in router2's last iteration (None if it logged none)."""
    found = re.findall(r"iter=\d+ wires=\d+ overused=(\d+)", log)
    return int(found[-1]) if found else None


def table(entries):
    """The markdown table of report entries."""

    def num(v):
        return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v}"

    head = (
        "| family | device | array | buffers (in/hidden/wgt/acc KiB) | pipeline | "
        "LUTs | FFs | DSPs | BRAMs | Fmax (MHz) | fits |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for e in entries:
        fits = "yes" if e["fits"] else "no" + (f" ({e['note']})" if e.get("note") else "")
        rows.append(
            f"| {e['family']} | {e['device']} | {e['rows']}x{e['cols']} | "
            f"{e['act_kib']}/{e.get('hidden_kib', 32)}/{e['weight_kib']}/{e['acc_kib']} | "
            f"{e.get('pipeline', 'deep')} | {num(e['luts'])} | {num(e['ffs'])} | "
            f"{num(e['dsps'])} | {num(e['brams'])} | {num(e['fmax_mhz'])} | {fits} |"
        )
    paths = [
        f"- {e['family']} {e['rows']}x{e['cols']}: {p['ns']} ns ({p['routing_ns']} ns "
        f"routing), `{p['from']}` -> `{p['to']}`"
        for e in entries
        if (p := e.get("critical_path"))
    ]
    tail = "\nCritical paths:\n" + "\n".join(paths) + "\n" if paths else ""
    spread = [
        f"- {e['family']} {e['rows']}x{e['cols']}: "
        + ", ".join(f"seed {k}: {v if v else '-'} MHz" for k, v in e["seeds"].items())
        + f" (reported: seed {e['seed']})"
        for e in entries
        if e.get("seeds")
    ]
    if spread:
        tail += "\nnextpnr seeds tried:\n" + "\n".join(spread) + "\n"
    slow = [
        f"- {e['family']} {e['rows']}x{e['cols']} (seed {e.get('seed', 1)}): "
        + "; ".join(f"`{n['net']}` {n['arrival_ns']} ns ({n['inputs']} in)" for n in nets)
        for e in entries
        if (nets := e.get("slow_nets"))
    ]
    if slow:
        tail += "\nSlowest nets into registers (arrival after the clock edge):\n"
        tail += "\n".join(slow) + "\n"
    return head + "\n".join(rows) + "\n" + tail
