"""Shared helpers for the amaranth.sim tests of the core's blocks: drive and watch
:mod:`amaranth.lib.stream` interfaces, run a scenario."""

from amaranth.sim import Simulator

__all__ = ["run_scenario", "stream_get", "stream_monitor", "stream_put"]


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` on ``stream`` until it is taken. Calls back to back send a beat
    every cycle the sink is ready."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload from ``stream``."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def stream_monitor(ctx, stream, log, convert=lambda payload: payload):
    """Append ``(cycle, convert(payload))`` to ``log`` for every beat ``stream`` moves
    (valid and ready at a clock edge; cycle 0 is the first edge)."""
    cycle = 0
    async for _, _, valid, ready, payload in ctx.tick().sample(
        stream.valid, stream.ready, stream.payload
    ):
        if valid and ready:
            log.append((cycle, convert(payload)))
        cycle += 1


def run_scenario(dut, *testbenches, monitors=(), background=()):
    """Simulate ``dut`` with a clock and the given testbenches (``async def f(ctx)``)
    until they return, beside the ``background`` ones (models of what surrounds the
    block), while each monitor ``(stream, log, convert)`` records the beats of its
    stream (:func:`stream_monitor`)."""
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)  # none for a combinational block
    for bench in testbenches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    for stream, log, convert in monitors:
        sim.add_process(_monitor(stream, log, convert))
    sim.run()


def _monitor(stream, log, convert):
    async def process(ctx):
        await stream_monitor(ctx, stream, log, convert)

    return process
