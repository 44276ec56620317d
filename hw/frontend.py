"""The instruction front end: decodes the program stream, loads buffers, reports status."""

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .check import LOOP_PRODUCTS, InstructionCheck, Precheck, loop_factors, precheck
from .dsp import RegisteredMultiply
from .fanout import LANES_PER_COPY, kept, lane_groups
from .isa import ErrorCode, LoopTarget, Opcode, Target
from .payloads import (
    INSTRUCTION,
    PATTERN,
    QUEUED,
    CheckedBeat,
    EngineState,
    ProgramBeat,
    StatusWord,
    WeightWrite,
    WritePort,
    act_word,
    bias_row,
    scale_row,
)

__all__ = ["IN_BUFFER_DEPTH", "FrontEnd", "input_beats"]

#: Program beats the input buffer holds (deep pipeline): the least that passes a beat
#: every cycle (its first word falls through, so a beat written in one cycle is read in
#: the next while the next is written).
IN_BUFFER_DEPTH = 2


def input_beats(cfg) -> int:
    """Program beats the front end can hold before its decoder: with the deep pipeline
    the input register stage, the input buffer and the head register, else none."""
    return 1 + IN_BUFFER_DEPTH + 1 if cfg.deep_pipeline else 0


class _State(enum.Enum, shape=2):
    RUN = 0  #: decode the next instruction
    DATA = 1  #: LOAD data beats
    DRAIN = 2  #: after an error: discard beats up to tlast
    STATUS = 3  #: wait for the engine, then send the status packet


class _PatternRegister(data.StructLayout):
    """One target's address pattern, with what the checks of the instructions under it
    compare: its ``rows`` (``inner * outer``) and address ``limit`` (see
    :class:`systolic.hw.payloads.LoopCheck`). ``set`` is low while the pattern is linear."""

    def __init__(self, cfg):
        super().__init__(
            {"set": 1, "pattern": PATTERN, "rows": isa.ROWS_BITS, "limit": range(cfg.act_space + 1)}
        )


#: The linear pattern (the reset state): row ``i`` at ``base + i``.
_LINEAR = {"set": 0, "pattern": {"inner": 0, "inner_stride": 1, "outer_stride": 0}}


class _PatternUpdate(data.StructLayout):
    """What changes the address patterns in a cycle: a LOOP taken (``loop``, setting
    ``target``'s register to ``value``) or the status packet's last word sent
    (``linear``: both back to linear)."""

    def __init__(self, cfg):
        super().__init__(
            {
                "loop": 1,
                "target": LoopTarget,
                "value": _PatternRegister(cfg),
                "linear": 1,
            }
        )


class FrontEnd(wiring.Component):
    """Takes one program beat per cycle.

    Validates every instruction before it has any effect (see :class:`isa.ErrorCode`),
    writes LOAD data into the buffers, queues MATMUL and POSTPROC for the engine,
    holds SYNC and END until the engine is idle, and after END (or an error and the
    stream's tlast) sends the status packet: the error code and the counters, one
    :data:`isa.STATUS_WORD_BITS`-bit word a beat in :data:`isa.STATUS_FIELDS` order. The
    error code is sticky until the packet has been sent; counters restart with the next
    program.

    LOOP sets one target's address pattern (:class:`isa.LoopTarget`) in the cycle it is
    taken; it never waits and never enters the queue. Each queued MATMUL carries the
    READ pattern, each POSTPROC the WRITE pattern (:data:`systolic.hw.payloads.QUEUED`). Both
    are linear at reset and again from the cycle the status packet's last word is sent.

    Members
    -------
    i_program : In(stream.Signature(ProgramBeat))
        The program stream.
    o_instr : Out(stream.Signature(QUEUED))
        MATMUL and POSTPROC, with their address patterns, for the engine's queue.
    o_status : Out(stream.Signature(StatusWord))
        The status packet.
    act_write, weight_write, bias_write, scale_write : Out
        LOAD data into the input, weight and parameter buffers (a parameter beat writes
        one lane).
    engine : In(EngineState)
        The engine's state, for SYNC, END and the counters.
    error : Out(isa.ErrorCode)
        The sticky error code.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        C = cfg.cols
        super().__init__(
            {
                "i_program": In(stream.Signature(ProgramBeat(cfg))),
                "o_instr": Out(stream.Signature(QUEUED)),
                "o_status": Out(stream.Signature(StatusWord())),
                "act_write": Out(WritePort(cfg.act_depth, act_word(cfg))),
                "weight_write": Out(WeightWrite(cfg)),
                "bias_write": Out(WritePort(cfg.param_depth, bias_row(cfg), lanes=C)),
                "scale_write": Out(WritePort(cfg.param_depth, scale_row(cfg), lanes=C)),
                "engine": In(EngineState()),
                "error": Out(ErrorCode),
            }
        )

    def elaborate(self, platform):
        m = Module()
        patterns = [
            Signal(_PatternRegister(self._cfg), init=_LINEAR, name=f"{t.name.lower()}_pattern")
            for t in LoopTarget
        ]
        update = Signal(_PatternUpdate(self._cfg))
        beat, err, value = self._checked_input(m, platform, patterns, update)
        m.d.comb += update.value.eq(value)
        fire = beat.valid & beat.ready
        state = Signal(_State)
        error = Signal(ErrorCode)
        m.d.comb += self.error.eq(error)
        # the LOAD in progress: where the next data beat goes
        load = Signal(
            data.StructLayout(
                {
                    "target": Target,
                    "addr": isa.COUNT_BITS,
                    "sub": range(max(self._cfg.rows, self._cfg.cols)),
                    "left": isa.COUNT_BITS,
                }
            )
        )
        self._decode(m, beat, err, state, error, load, patterns, update)
        self._update_patterns(m, patterns, update)
        self._load_writes(m, beat.payload.data, (state == _State.DATA) & fire, load)
        counters, incs = self._counters(m, fire, beat.valid, state)
        idx = self._status(m, state, error, counters, update)
        if platform == "formal":
            # Invariants the k-induction proofs (sim/formal.py) need and cannot find by
            # themselves: an error is held only while the rest of its frame is discarded
            # or its status packet waits, never while a frame is decoded or loaded; the
            # packet starts at its first word; and once its first word has left, no
            # counter increment is still on its way (so the words stay put while the
            # stream waits).
            m.d.comb += [
                Assert(
                    (error == ErrorCode.NONE) | (state == _State.DRAIN) | (state == _State.STATUS),
                    "error only in DRAIN or STATUS",
                ),
                Assert((state == _State.STATUS) | (idx == 0), "status word 0 outside STATUS"),
                Assert(
                    (state != _State.STATUS) | (idx == 0) | ~Cat(*incs.values()).any(),
                    "no counter increment after the first status word",
                ),
            ]
        return m

    def _checked_input(self, m, platform, patterns, update):
        """The program stream with each beat's instruction check, as a stream of
        :class:`CheckedBeat` whose ``ready`` the decoder drives, and the beat's error code
        finished against the address pattern it is under (:meth:`_finish`).

        With the deep pipeline, a beat is first registered (a pipeline stage whose ready
        passes through), together with the :func:`~systolic.hw.check.precheck` of the
        beat arriving (the LOOP products and the range rules' ends), so that the check's
        multipliers and adders have a register on either side; the check of the
        registered beat then enters a small buffer (:data:`IN_BUFFER_DEPTH` beats) with
        the beat, so that neither the check nor the port's tready sits on a path with the
        decisions below. The buffer's output enters the head register, which the decoder
        reads, together with its finished error code: the comparisons with the pattern
        registers are made a cycle ahead, against the patterns as they are and as the
        LOOP the decoder takes in that cycle sets them (forwarded; the value a LOOP sets
        is registered with it in the head register), and the decoder's
        ``ready`` depends on a register, not on them. Timing is counted from the head
        register: a program's cycles are the same with these stages or without them.

        In the formal proofs (``platform == "formal"``) the LOOP products are free values
        (``AnySeq``): what is proved then holds whatever they are, the real products
        included, and the solver does not bit-blast three multipliers. That they are the
        right products is tested against the host's rules (``tests/test_frontend.py``)
        and by the fuzzer."""
        cfg = self._cfg

        def precheck_of(dst, instr):
            if platform == "formal":
                products = AnySeq(LOOP_PRODUCTS.size)
                return [dst.products.eq(products), *precheck(cfg, dst, instr, products=False)]
            return precheck(cfg, dst, instr)

        def under(beat):  # the pattern register that ``beat``'s rows follow
            return self._under(m, patterns, beat.loop.target)

        m.submodules.check = check = InstructionCheck(cfg)
        checked = stream.Signature(CheckedBeat(cfg)).create()
        program = self.i_program
        arriving = data.View(INSTRUCTION, program.payload.data[: isa.INSTR_BITS])
        if not cfg.deep_pipeline:
            m.d.comb += [
                check.instr.eq(arriving),
                check.last.eq(program.payload.last),
                *precheck_of(check.pre, arriving),
                checked.payload.data.eq(program.payload.data),
                checked.payload.last.eq(program.payload.last),
                checked.payload.error.eq(check.error),
                checked.payload.loop.eq(check.loop),
                checked.valid.eq(program.valid),
                program.ready.eq(checked.ready),
            ]
            value = self._loop_value(m, checked.payload)
            return checked, self._finish(m, checked.payload, under(checked.payload)), value
        staged = Signal(ProgramBeat(cfg))
        staged_valid = Signal()
        pre = Signal(Precheck(cfg))
        pre_ends = Signal(Precheck(cfg))  # its ends (the products: _registered_products)
        # a SyncFIFO (first word falls through): the head register reads the word at its read
        # pointer (a register). A SyncFIFOBuffered's output register has an enable, the
        # read: Yosys maps it onto the LUT RAM by registering the address instead, which
        # put the decoder's ``ready`` in front of the RAM, the comparisons and the head
        # register (the 8x8's worst path at two seeds, 14.13 ns)
        m.submodules.in_buffer = inbuf = fifo.SyncFIFO(
            width=CheckedBeat(cfg).size, depth=IN_BUFFER_DEPTH
        )
        m.d.comb += program.ready.eq(~staged_valid | inbuf.w_rdy)
        with m.If(program.ready):
            m.d.sync += [
                staged.eq(program.payload),
                staged_valid.eq(program.valid),
                *precheck(cfg, pre_ends, arriving, products=False),
            ]
        m.d.comb += pre.ends.eq(pre_ends.ends)
        self._registered_products(m, platform, pre.products, arriving.loop, program.ready)
        checked_in = data.View(CheckedBeat(cfg), inbuf.w_data)
        m.d.comb += [
            check.instr.eq(staged.data[: isa.INSTR_BITS]),
            check.last.eq(staged.last),
            check.pre.eq(pre),
            checked_in.data.eq(staged.data),
            checked_in.last.eq(staged.last),
            checked_in.error.eq(check.error),
            checked_in.loop.eq(check.loop),
            inbuf.w_en.eq(staged_valid),
        ]
        # the head register: the buffer's next beat with the pattern value it sets if it
        # is a LOOP (registered with it, so that the comparison below starts at a
        # register: computed from the head, the value's select was in front of it, both
        # sizes' worst path, 17.68 ns on the 16x16), and its error code finished against
        # the pattern registers, and against the value a LOOP taken now writes into one
        # of them, both registered, and which of the two holds; the select comes after
        # the registers (selecting before them, Yosys's opt_share merges the two
        # comparisons into one of a selected operand, and the LOOP's issue logic is in
        # front of the comparison again)
        nxt = data.View(CheckedBeat(cfg), inbuf.r_data)
        value = Signal(_PatternRegister(cfg), name="head_loop_value")
        nxt_value = self._loop_value(m, nxt)
        as_is = Signal(ErrorCode, name="head_error")
        forwarded = Signal(ErrorCode, name="head_error_forwarded")
        use_forwarded = Signal(name="head_forwarded")
        # both patterns went linear since (or as) the head beat was loaded: its error is
        # the check's alone. A flag of its own, so that the head registers load on
        # ``take`` alone (with ``as_is`` reloaded on the reset to linear, ABC had put the
        # load in front of the comparisons: an 8x8 worst path, 14.99 ns at seed 1)
        linear = Signal(name="head_linear")
        take = ~checked.valid | checked.ready
        m.d.comb += inbuf.r_en.eq(take)
        finished = self._finish(m, nxt, under(nxt))
        forwarding = self._finish(m, nxt, update.value)
        with m.If(take):
            m.d.sync += [
                checked.valid.eq(inbuf.r_rdy),
                checked.payload.eq(nxt),
                value.eq(nxt_value),
                as_is.eq(finished),
                forwarded.eq(forwarding),
                use_forwarded.eq(update.loop & (update.target == nxt.loop.target)),
                linear.eq(update.linear),
            ]
        with m.Elif(update.linear):  # no LOOP is taken while a beat waits in the head
            m.d.sync += linear.eq(1)
        err = Mux(linear, checked.payload.error, Mux(use_forwarded, forwarded, as_is))
        return checked, err, value

    @staticmethod
    def _registered_products(m, platform, dst, lp, en):
        """``dst``: the :data:`~systolic.hw.check.LOOP_PRODUCTS` of the LOOP fields ``lp``
        as they were in the last cycle with ``en`` high, each multiplier's product
        registered (:class:`~systolic.hw.dsp.RegisteredMultiply`; on the ECP5 the DSP
        block's output register: Yosys's combinational DSP and the route from it to a
        register were among the 8x8's slowest nets, 10.9 ns). In the formal proofs free
        values, registered alike (:meth:`_checked_input`)."""
        if platform == "formal":
            products = Signal(LOOP_PRODUCTS)
            with m.If(en):
                m.d.sync += products.eq(AnySeq(LOOP_PRODUCTS.size))
            m.d.comb += dst.eq(products)
            return
        for name, (a, b) in loop_factors(lp).items():
            mul = RegisteredMultiply(len(a), len(b), input_registers=False)
            m.submodules[f"loop_{name}"] = mul
            m.d.comb += [mul.a.eq(a), mul.b.eq(b), mul.en.eq(en), getattr(dst, name).eq(mul.p)]

    def _decode(self, m, beat, err, state, error, load, patterns, update):
        """The state machine: takes ``beat`` (whose finished error code is ``err``), queues
        engine instructions, starts LOADs, says which pattern a LOOP sets (``update``)."""
        cfg = self._cfg
        instr = data.View(INSTRUCTION, beat.payload.data[: isa.INSTR_BITS])
        op, ld, last = instr.bare.op, instr.load, beat.payload.last
        fire = beat.valid & beat.ready
        # the instruction for the engine's queue, with the pattern its rows follow
        m.d.comb += [
            self.o_instr.payload.instr.eq(beat.payload.data[: isa.INSTR_BITS]),
            self.o_instr.payload.pattern.eq(
                self._under(m, patterns, beat.payload.loop.target).pattern
            ),
        ]
        m.d.comb += update.target.eq(instr.loop.target)

        def set_error(code):
            with m.If(error == ErrorCode.NONE):
                m.d.sync += error.eq(code)

        with m.Switch(state):
            with m.Case(_State.RUN):
                reject = (err != ErrorCode.NONE) | (last & (op != Opcode.END))
                with m.If(reject):
                    m.d.comb += beat.ready.eq(1)
                with m.Elif((op == Opcode.MATMUL) | (op == Opcode.POSTPROC)):
                    m.d.comb += [
                        beat.ready.eq(self.o_instr.ready),
                        self.o_instr.valid.eq(beat.valid),
                    ]
                with m.Elif((op == Opcode.SYNC) | (op == Opcode.END)):
                    m.d.comb += beat.ready.eq(self.engine.idle)
                with m.Else():
                    m.d.comb += beat.ready.eq(1)
                with m.If(fire):
                    with m.If(reject):
                        set_error(Mux(err != ErrorCode.NONE, err, ErrorCode.NO_END))
                        m.d.sync += state.eq(Mux(last, _State.STATUS, _State.DRAIN))
                    with m.Elif(op == Opcode.LOAD):
                        m.d.sync += [
                            state.eq(_State.DATA),
                            load.target.eq(ld.target),
                            load.addr.eq(ld.addr),
                            load.sub.eq(0),
                            load.left.eq(ld.count),
                        ]
                    with m.Elif(op == Opcode.LOOP):
                        m.d.comb += update.loop.eq(1)
                    with m.Elif(op == Opcode.END):
                        m.d.sync += state.eq(_State.STATUS)
            with m.Case(_State.DATA):
                m.d.comb += beat.ready.eq(1)
                sub_wrap = Mux(load.target == Target.WEIGHT, cfg.rows - 1, cfg.cols - 1)
                with m.If(fire):
                    m.d.sync += load.left.eq(load.left - 1)
                    with m.If(load.target == Target.ACT):
                        m.d.sync += load.addr.eq(load.addr + 1)
                    with m.Elif(load.sub == sub_wrap):
                        m.d.sync += [load.sub.eq(0), load.addr.eq(load.addr + 1)]
                    with m.Else():
                        m.d.sync += load.sub.eq(load.sub + 1)
                    with m.If(last):
                        set_error(ErrorCode.NO_END)
                        m.d.sync += state.eq(_State.STATUS)
                    with m.Elif(load.left == 1):
                        m.d.sync += state.eq(_State.RUN)
            with m.Case(_State.DRAIN):
                m.d.comb += beat.ready.eq(1)
                with m.If(fire & last):
                    m.d.sync += state.eq(_State.STATUS)

    def _under(self, m, patterns, target):
        """The pattern register (of ``patterns``, one a :class:`LoopTarget`) that the rows
        of a beat whose LOOP target is ``target`` follow."""
        reg = Signal(_PatternRegister(self._cfg))
        m.d.comb += reg.eq(
            Mux(target == LoopTarget.WRITE, patterns[1].as_value(), patterns[0].as_value())
        )
        return reg

    @staticmethod
    def _finish(m, checked, reg):
        """The error code of ``checked`` (a :class:`CheckedBeat`) under the pattern
        register value ``reg``: the check's, finished with comparisons only."""
        loop = checked.loop
        under = Signal(ErrorCode)
        with m.If(loop.early != ErrorCode.NONE):
            m.d.comb += under.eq(loop.early)
        with m.Elif(loop.m != reg.rows):
            m.d.comb += under.eq(ErrorCode.BAD_LOOP)
        with m.Elif(loop.addr >= reg.limit):
            m.d.comb += under.eq(ErrorCode.ACT_RANGE)
        with m.Else():
            m.d.comb += under.eq(loop.late)
        return Mux(loop.applies & reg.set, under, checked.error)

    def _loop_value(self, m, beat):
        """The register value the LOOP in ``beat`` (a :class:`CheckedBeat`) sets its
        target's pattern to; ``inner == 0`` sets it back to linear."""
        cfg = self._cfg
        lp = data.View(INSTRUCTION, beat.data[: isa.INSTR_BITS]).loop
        span = beat.loop.span
        value = Signal(_PatternRegister(cfg))
        with m.If(lp.inner == 0):
            m.d.comb += value.eq(value.shape().const(_LINEAR))
        with m.Else():
            m.d.comb += [
                value.set.eq(1),
                value.pattern.inner.eq(lp.inner),
                value.pattern.inner_stride.eq(lp.inner_stride),
                value.pattern.outer_stride.eq(lp.outer_stride),
                value.rows.eq(beat.loop.rows),
                value.limit.eq(Mux(span >= cfg.act_space, 0, cfg.act_space - span)),
            ]
        return value

    @staticmethod
    def _update_patterns(m, patterns, update):
        """A LOOP taken sets its target's pattern; the status packet's end sets both back
        to linear."""
        with m.If(update.linear):
            m.d.sync += [reg.eq(reg.shape().const(_LINEAR)) for reg in patterns]
        with m.Elif(update.loop):
            for target, reg in zip(LoopTarget, patterns):
                with m.If(update.target == target):
                    m.d.sync += reg.eq(update.value)

    def _load_writes(self, m, beat, writing, load):
        """Buffer writes from LOAD data beats (the range was checked on the header).

        The write ports are registered (a write lands the cycle after its beat is
        taken): the beat's register feeds the decoder, and every buffer's write data,
        enable and address are a register of their own that the placer can put near
        the block RAMs. Without it the beat register, routed to banks all over the die,
        was the 8x8's critical path (18.6 ns, 17.8 of it routing). The parameter lanes
        have a stage more (their write lands two cycles after the beat): a copy of the
        beat's data a group of lanes, loaded every cycle. A MATMUL or POSTPROC taken
        after the beat reads the buffer two cycles later at the earliest (queue, then
        issue), and the parameters a cycle after that (the row's parameter address is
        registered at the issue), so it still sees the write."""
        C = self._cfg.cols

        def no_reset(port, *names):  # address and data: registers without a reset
            regs = [Signal.like(getattr(port, n), reset_less=True, name=f"{n}_q") for n in names]
            m.d.comb += [getattr(port, n).eq(r) for n, r in zip(names, regs)]
            return regs

        act, wgt = self.act_write, self.weight_write
        act_addr, act_data = no_reset(act, "addr", "data")
        wgt_tile, wgt_row, wgt_data = no_reset(wgt, "tile", "row", "data")
        # Each port's address and data registers load whenever a LOAD to that port is in
        # progress, taken beat or not: only the enables say whether a write happens, so
        # the decoder's ready and error logic (the 8x8's critical path) reaches the
        # enables alone, not hundreds of data flip-flops; and as the load conditions
        # differ, the ports' registers stay separate (identical ones would be merged).
        is_act, is_wgt = load.target == Target.ACT, load.target == Target.WEIGHT
        m.d.sync += [act.en.eq(writing & is_act), wgt.en.eq(writing & is_wgt)]
        with m.If(is_act):
            m.d.sync += [act_addr.eq(load.addr), act_data.eq(beat[: act_data.shape().size])]
        with m.If(is_wgt):
            m.d.sync += [
                wgt_tile.eq(load.addr),
                wgt_row.eq(load.sub),
                wgt_data.eq(beat[: wgt_data.shape().size]),
            ]
        # the parameter ports have an address register a lane, loaded with the lane's data
        # (a beat carries one lane): a single register drove every lane's LUT RAM across
        # the die, the 16x16's worst path (18.75 ns, 18.14 of it the one net). Before
        # them, a stage: the beat's data a copy a group of lanes, and where it goes. As
        # a single register, a data bit drove every lane's data register (the 16x16's
        # worst path, 20.03 ns of which 19.27 the one net); as copies loaded with the head
        # register, the head's load enable reached them all instead (an 8x8 worst path)
        params = ((self.bias_write, Target.BIAS, "bias"), (self.scale_write, Target.SCALE, "scale"))
        data_bits = max(Shape.cast(port.data.shape().elem_shape).width for port, _, _ in params)
        copies = [
            kept(data_bits, f"param_data_lanes{g}", reset_less=True)
            for g in range(len(lane_groups(C)))
        ]
        to = Signal.like(load, name="param_load")  # ``load`` and ``writing`` a cycle later
        to_writing = Signal(name="param_writing")
        m.d.sync += [
            *(copy.eq(beat[:data_bits]) for copy in copies),
            to.eq(load),
            to_writing.eq(writing),
        ]
        for port, target, name in params:
            lane_bits = Shape.cast(port.data.shape().elem_shape).width
            (lanes,) = no_reset(port, "data")
            is_port = to.target == target
            for c in range(C):
                addr = kept(range(self._cfg.param_depth), f"{name}_waddr_lane{c}", reset_less=True)
                m.d.comb += port.addr[c].eq(addr)
                m.d.sync += port.en[c].eq(to_writing & is_port & (to.sub == c))
                with m.If(is_port & (to.sub == c)):
                    data_in = copies[c // LANES_PER_COPY][:lane_bits]
                    m.d.sync += [addr.eq(to.addr), lanes[c].eq(data_in)]

    def _counters(self, m, fire, valid, state):
        """The counters of the status packet, from the first beat of a program through the
        cycle END is taken.

        Each counter adds a registered increment, one cycle late, so that the engine's
        state signals (from across the die) reach only a flip-flop. The last increment
        lands in the first cycle of the status state, before the first counter word
        leaves (the error word goes first), so the packet carries the same counts."""
        counters = {name: Signal(isa.STATUS_WORD_BITS, name=name) for name in isa.STATUS_FIELDS[1:]}
        started = Signal()
        active = (started | fire) & (state != _State.STATUS)
        with m.If(fire):
            m.d.sync += started.eq(1)
        incs = {}
        for name, count in (
            ("cycles", 1),
            ("busy_cycles", self.engine.busy),
            ("mac_cycles", self.engine.mac_issue),
            ("stall_in_cycles", ~valid),
            ("stall_out_cycles", self.engine.out_stall),
        ):
            incs[name] = Signal(name=f"{name}_inc")
            m.d.sync += incs[name].eq(active & count)
            m.d.sync += counters[name].eq(counters[name] + incs[name])
        with m.If(self.o_status.valid & self.o_status.ready & self.o_status.payload.last):
            m.d.sync += started.eq(0)
            m.d.sync += [counter.eq(0) for counter in counters.values()]
        return counters, incs

    def _status(self, m, state, error, counters, update):
        """The status packet, once the engine is idle; then the next program, with both
        patterns linear (``update.linear``)."""
        st = self.o_status
        idx = Signal(range(len(isa.STATUS_FIELDS)))
        words = [error.as_value()] + list(counters.values())
        with m.If(state == _State.STATUS):
            m.d.comb += st.valid.eq(self.engine.idle)
        with m.Switch(idx):
            for i, word in enumerate(words):
                with m.Case(i):
                    m.d.comb += st.payload.word.eq(word)
        m.d.comb += st.payload.last.eq(idx == len(words) - 1)
        with m.If(st.valid & st.ready):
            m.d.sync += idx.eq(idx + 1)
            with m.If(st.payload.last):
                m.d.sync += [idx.eq(0), state.eq(_State.RUN), error.eq(ErrorCode.NONE)]
                m.d.comb += update.linear.eq(1)
        return idx
