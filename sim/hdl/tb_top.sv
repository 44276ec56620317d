// Simulation harness around the generated core.
//
// Two ways to drive it:
//  * player_en = 0: the core's AXI4-Stream ports are the harness's ports, for
//    cocotbext-axi's AxiStreamSource/Sink (per-beat Python, full control);
//  * player_en = 1: an on-chip player streams a program loaded with $readmemh into
//    s_axis at one beat a cycle (or with pseudo-random gaps), and a recorder writes
//    every m_axis beat to a file (with pseudo-random backpressure), so Python only
//    waits for `player_done` and the simulator runs at full speed.
//
// The clock: `clk` from outside (cocotb's Clock, or a C++ loop: ceiling_main.cpp), or
// the harness's own, `own_clk`, while the variable `own_clock` is 1 (sim/player.py sets
// it). Nothing of the harness's own clock crosses into Python: the simulator runs on
// its own until `player_done` or a timeout. The clock not in use stays low; the core
// sees their OR.
`timescale 1ns/1ps
//
// The parameters have no defaults: the runner (sim/runner.py) sets both, the stream
// width from the configuration and the player's depth from PLAYER_DEPTH_LOG2.
module tb_top #(
    parameter int W,                 // stream width in bits (CoreConfig.stream_bits)
    parameter int DEPTH_LOG2         // log2 of the program beats the player can hold
) (
    input  logic         clk,
    input  logic         rst,
    // AXI4-Stream, used when player_en = 0
    input  logic [W-1:0] s_axis_tdata,
    input  logic         s_axis_tvalid,
    output logic         s_axis_tready,
    input  logic         s_axis_tlast,
    output logic [W-1:0] m_axis_tdata,
    output logic         m_axis_tvalid,
    input  logic         m_axis_tready,
    output logic         m_axis_tlast,
    output logic [7:0]   error,
    // player
    input  logic         player_en,
    input  logic         player_start,   // pulse: load the program file, start
    input  logic [31:0]  player_beats,   // beats in the program
    input  logic [7:0]   gap_level,      // 0: no gaps; n: valid low when lfsr byte < n
    input  logic [7:0]   stall_level,    // 0: never blocked; n: ready low when byte < n
    input  logic [31:0]  seed,
    output logic         player_done,
    output logic [31:0]  player_cycles
);
    logic [W-1:0] program_mem [0:(1 << DEPTH_LOG2) - 1];
    logic [31:0]  idx;
    logic [31:0]  written;  // result beats written; flushed every 1024 for progress bars
    logic         running;
    logic [31:0]  lfsr_in, lfsr_out;
    string        program_file, results_file;
    integer       fd;

    logic [W-1:0] c_s_tdata;  logic c_s_tvalid, c_s_tready, c_s_tlast;
    logic [W-1:0] c_m_tdata;  logic c_m_tvalid, c_m_tready, c_m_tlast;

    // the harness's own clock: 10 ns, as sim/tb.py's CLOCK_NS; the first rising edge
    // comes half a period after own_clock goes to 1, the last before it goes to 0
    logic own_clock = 1'b0;
    logic own_clk = 1'b0;
    wire  core_clk = clk | own_clk;

    initial forever begin
        wait (own_clock);
        while (own_clock) begin
            #5 own_clk = 1'b1;
            #5 own_clk = 1'b0;
        end
    end

    core dut (
        .clk(core_clk), .rst(rst),
        .s_axis_tdata(c_s_tdata), .s_axis_tvalid(c_s_tvalid),
        .s_axis_tready(c_s_tready), .s_axis_tlast(c_s_tlast),
        .m_axis_tdata(c_m_tdata), .m_axis_tvalid(c_m_tvalid),
        .m_axis_tready(c_m_tready), .m_axis_tlast(c_m_tlast),
        .error(error)
    );

    wire gap   = gap_level != 0 && lfsr_in[7:0] < gap_level;
    wire stall = stall_level != 0 && lfsr_out[7:0] < stall_level;
    wire p_valid = running && idx < player_beats && !gap;

    assign c_s_tdata     = player_en ? program_mem[idx[DEPTH_LOG2-1:0]] : s_axis_tdata;
    assign c_s_tvalid    = player_en ? p_valid : s_axis_tvalid;
    assign c_s_tlast     = player_en ? (idx == player_beats - 1) : s_axis_tlast;
    assign s_axis_tready = player_en ? 1'b0 : c_s_tready;
    assign m_axis_tdata  = c_m_tdata;
    assign m_axis_tvalid = player_en ? 1'b0 : c_m_tvalid;
    assign m_axis_tlast  = c_m_tlast;
    assign c_m_tready    = player_en ? (running && !stall) : m_axis_tready;

    initial begin
        if (!$value$plusargs("program=%s", program_file)) program_file = "program.hex";
        if (!$value$plusargs("results=%s", results_file)) results_file = "results.hex";
    end

    always_ff @(posedge core_clk) begin
        // xorshift32, one step a cycle for each side
        lfsr_in  <= lfsr_in ^ (lfsr_in << 13) ^ ((lfsr_in ^ (lfsr_in << 13)) >> 17)
                    ^ ((lfsr_in ^ (lfsr_in << 13) ^ ((lfsr_in ^ (lfsr_in << 13)) >> 17)) << 5);
        lfsr_out <= lfsr_out ^ (lfsr_out << 13) ^ ((lfsr_out ^ (lfsr_out << 13)) >> 17)
                    ^ ((lfsr_out ^ (lfsr_out << 13) ^ ((lfsr_out ^ (lfsr_out << 13)) >> 17)) << 5);
        if (player_start) begin
            $readmemh(program_file, program_mem, 0, player_beats - 1);
            fd <= $fopen(results_file, "w");
            idx <= 0;
            written <= 0;
            running <= 1;
            player_done <= 0;
            player_cycles <= 0;
            lfsr_in <= seed | 32'h1;
            lfsr_out <= (seed * 32'h9E3779B9) | 32'h1;
        end else if (running) begin
            player_cycles <= player_cycles + 1;
            if (p_valid && c_s_tready) idx <= idx + 1;
            if (c_m_tvalid && c_m_tready) begin
                $fdisplay(fd, "%h %0d", c_m_tdata, c_m_tlast);
                written <= written + 1;
                if (written[9:0] == 10'h3ff) $fflush(fd);
                if (c_m_tlast) begin
                    $fclose(fd);
                    running <= 0;
                    player_done <= 1;
                end
            end
        end
        if (rst && !player_start) begin
            running <= 0;
        end
    end
endmodule
