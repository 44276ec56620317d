// The ECP5's MULT18X18D (sysDSP 18x18 multiplier) in the modes the core's ECP5 netlist
// uses (systolic.hw.dsp.RegisteredMultiply), for simulating that netlist: Yosys's ECP5
// cell library has a black box only. P = A * B (each operand signed when its SIGNEDx pin
// is high; the pins are constants in that netlist, so they are not registered here),
// with the input registers (REG_INPUTA_CLK, REG_INPUTB_CLK) and the output register
// (REG_OUTPUT_CLK) each either off ("NONE") or on CLK0, loading when CE0 is high and
// cleared by RST0 (RESETMODE "SYNC"); no pipeline register, no C input, no shift chains.
// Any other setting stops the simulation, so that a mode this model does not implement
// is never simulated as if it were.
`default_nettype none
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE",
    parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0",
    parameter REG_INPUTB_CLK = "NONE",
    parameter REG_INPUTB_CE = "CE0",
    parameter REG_INPUTB_RST = "RST0",
    parameter REG_OUTPUT_CLK = "NONE",
    parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0"
) (
    input wire A0,A1,A2,A3,A4,A5,A6,A7,A8,A9,A10,A11,A12,A13,A14,A15,A16,A17,
    input wire B0,B1,B2,B3,B4,B5,B6,B7,B8,B9,B10,B11,B12,B13,B14,B15,B16,B17,
    input wire C0,C1,C2,C3,C4,C5,C6,C7,C8,C9,C10,C11,C12,C13,C14,C15,C16,C17,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK0, CE0, RST0,
    output wire P35,P34,P33,P32,P31,P30,P29,P28,P27,P26,P25,P24,P23,P22,P21,P20,P19,P18,P17,P16,P15,P14,P13,P12,P11,P10,P9,P8,P7,P6,P5,P4,P3,P2,P1,P0
);
    localparam IN_A = REG_INPUTA_CLK == "CLK0", IN_B = REG_INPUTB_CLK == "CLK0";
    localparam OUT = REG_OUTPUT_CLK == "CLK0";
    initial begin
        if (!(IN_A || REG_INPUTA_CLK == "NONE") || !(IN_B || REG_INPUTB_CLK == "NONE")
                || !(OUT || REG_OUTPUT_CLK == "NONE"))
            $fatal(1, "MULT18X18D model: a register clock other than NONE or CLK0");
        if (REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_OUTPUT_CE != "CE0"
                || REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0"
                || REG_OUTPUT_RST != "RST0")
            $fatal(1, "MULT18X18D model: a clock enable or reset other than CE0, RST0");
    end
    wire [17:0] a = {A17,A16,A15,A14,A13,A12,A11,A10,A9,A8,A7,A6,A5,A4,A3,A2,A1,A0};
    wire [17:0] b = {B17,B16,B15,B14,B13,B12,B11,B10,B9,B8,B7,B6,B5,B4,B3,B2,B1,B0};
    reg [17:0] a_reg = 0, b_reg = 0;
    reg [35:0] p_reg = 0;
    wire [17:0] a_op = IN_A ? a_reg : a;
    wire [17:0] b_op = IN_B ? b_reg : b;
    wire [35:0] a_ext = {{18{SIGNEDA & a_op[17]}}, a_op};
    wire [35:0] b_ext = {{18{SIGNEDB & b_op[17]}}, b_op};
    wire [35:0] product = a_ext * b_ext;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_reg <= 0;
            b_reg <= 0;
            p_reg <= 0;
        end else if (CE0) begin
            a_reg <= a;
            b_reg <= b;
            p_reg <= product;
        end
    end
    wire unused = &{1'b0, C0,C1,C2,C3,C4,C5,C6,C7,C8,C9,C10,C11,C12,C13,C14,C15,C16,C17, SOURCEA, SOURCEB, 1'b0};
    assign {P35,P34,P33,P32,P31,P30,P29,P28,P27,P26,P25,P24,P23,P22,P21,P20,P19,P18,P17,P16,P15,P14,P13,P12,P11,P10,P9,P8,P7,P6,P5,P4,P3,P2,P1,P0} = OUT ? p_reg : product;
endmodule
