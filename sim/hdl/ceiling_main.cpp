// Verilator's ceiling: the harness (tb_top.sv) driven by a small C++ loop, with no VPI
// and no Python, so that the rtl backend's speed has a figure to be measured against.
//
// It plays one program the way sim/player.py does (3 cycles of reset, one idle cycle,
// the start pulse, then cycles until player_done), with the clock toggled here, and
// prints one line of JSON: done, sim_cycles (player_cycles), sim_seconds (the loop
// alone). The harness reads the program and writes the results through the same
// plusargs as under cocotb (+program=, +results=); +beats= is the program's length,
// +limit= the cycles allowed before it gives up (exit status 1).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "Vtb.h"
#include "verilated.h"

static uint64_t plusarg(VerilatedContext *ctx, const char *name, uint64_t fallback) {
    const std::string match = ctx->commandArgsPlusMatch(name);  // "+name=value" or ""
    const std::string::size_type eq = match.find('=');
    return eq == std::string::npos ? fallback : std::strtoull(match.c_str() + eq + 1, nullptr, 0);
}

int main(int argc, char **argv) {
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    const uint64_t beats = plusarg(ctx.get(), "beats=", 0);
    const uint64_t limit = plusarg(ctx.get(), "limit=", 100000000);
    auto top = std::make_unique<Vtb>(ctx.get(), "");

    auto tick = [&] {  // one 10 ns cycle, rising edge first
        top->clk = 1;
        top->eval();
        ctx->timeInc(5);
        top->clk = 0;
        top->eval();
        ctx->timeInc(5);
    };
    top->clk = 0;
    top->player_en = 0;
    top->player_start = 0;
    top->gap_level = 0;
    top->stall_level = 0;
    top->seed = 1;
    top->rst = 1;
    top->eval();
    for (int i = 0; i < 3; i++) tick();
    top->rst = 0;
    tick();
    top->player_en = 1;
    top->player_beats = static_cast<uint32_t>(beats);
    top->player_start = 1;
    tick();
    top->player_start = 0;

    const auto start = std::chrono::steady_clock::now();
    uint64_t n = 0;
    while (!top->player_done && n < limit && !ctx->gotFinish()) {
        tick();
        n++;
    }
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    std::printf("{\"done\": %d, \"sim_cycles\": %u, \"sim_seconds\": %.6f}\n",
                static_cast<int>(top->player_done), static_cast<unsigned>(top->player_cycles),
                seconds.count());
    top->final();
    return top->player_done ? 0 : 1;
}
