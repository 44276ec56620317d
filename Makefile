# Thin wrappers: every target calls the systolic command (or pytest, ruff) inside .venv,
# which is created and filled from pyproject.toml on first use (and again when it changes).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SYSTOLIC := $(VENV)/bin/systolic
STAMP  := $(VENV)/.installed
SIZE   ?= 8x8
ARGS   ?=
MODEL  ?= mlp

.DEFAULT_GOAL := help
.PHONY: help venv lint rtl sim formal test test-fast test-all train quantize infer demo synth bench bench-core clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

venv: $(STAMP)  ## create .venv and install the pinned dependencies

lint: $(STAMP)  ## ruff check and ruff format --check (also a unit test)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

rtl: $(STAMP)  ## write Verilog + config JSON for SIZE (e.g. 8x8) to build/<tag>/rtl
	$(SYSTOLIC) rtl --size $(SIZE) $(ARGS)

# The benches are tests of this checkout (tests/test_sim.py), not a systolic command.
sim: $(STAMP)  ## cocotb benches (units and whole core) on Verilator for 4x4, 8x8, 3x5
	$(PY) -m pytest tests/test_sim.py -v $(ARGS)

formal: $(STAMP)  ## SymbiYosys proofs of the stream contract (2x2, 3x2); build/formal/
	$(SYSTOLIC) formal $(ARGS)

# Test tiers (markers, see pyproject.toml): unit < rtl < gate < synth < formal < slow.
TIERS := unit or rtl or gate or synth or formal

test: $(STAMP)  ## every tier CI runs (all but slow), named explicitly
	$(PY) -m pytest -n 2 -m "($(TIERS)) and not slow" $(ARGS)

test-fast: $(STAMP)  ## the unit tier: Python, numpy and amaranth.sim (under 3 minutes)
	$(PY) -m pytest -n 2 -m "unit and not slow" $(ARGS)

test-all: $(STAMP)  ## every tier including the slow sweeps
	$(PY) -m pytest -n 2 -m "$(TIERS) or slow" $(ARGS)

train: $(STAMP)  ## train the MNIST MLP (MODEL=cnn: the CNN) into build/models/$(MODEL).pt
	$(SYSTOLIC) train --model $(MODEL) $(ARGS)

quantize: $(STAMP)  ## int8-quantize the checkpoint, report vs PyTorch
	$(SYSTOLIC) quantize --model $(MODEL) --json build/quantize-$(MODEL).json $(ARGS)

# Without ARGS: the demo (rtl on 256 images, then model on the whole split); with ARGS
# (for example ARGS="--backend model --batch 5"): exactly the run they describe.
infer: $(STAMP)  ## MNIST through the RTL core (MODEL=mlp or cnn), checked vs PyTorch
	$(SYSTOLIC) infer --model $(MODEL) $(if $(ARGS),$(ARGS),--demo)

demo: infer

synth: $(STAMP)  ## Yosys/nextpnr for ECP5-85F and iCE40 UP5K; build/synth/report.md
	$(SYSTOLIC) synth $(ARGS)

bench: $(STAMP)  ## CPU / GPU / core / distributed comparison, plots, REPORT.md + report.html
	$(SYSTOLIC) bench $(ARGS)

bench-core: $(STAMP)  ## 64x784 by 784x128 through the 8x8 RTL: utilization, sim speed
	$(SYSTOLIC) bench-core $(ARGS)

clean:  ## remove build/ (keeps .venv)
	rm -rf build

# The board top (core + serial link + PLL) through amaranth-boards' platform with the
# yowasp tools: build/bitstream/$(BOARD)-$(BOARD_SIZE)/top.bit and report.md.
BOARD ?= ulx3s
# the board's array: SIZE when given (make bitstream SIZE=8x8), else the 4x4 (the 8x8
# board top does not route yet; SIZE's own default, 8x8, is the other targets')
BOARD_SIZE = $(if $(filter command line environment,$(origin SIZE)),$(SIZE),4x4)
.PHONY: bitstream
bitstream: $(STAMP)  ## board bitstream (BOARD=ulx3s, SIZE default 4x4 [CLK_MHZ=30]) with its timing report
	$(SYSTOLIC) bitstream --board $(BOARD) --size $(BOARD_SIZE) $(if $(CLK_MHZ),--clk-mhz $(CLK_MHZ)) $(ARGS)
	$(SYSTOLIC) board-link --config build/bitstream/$(BOARD)-$(BOARD_SIZE)/config.json \
		$(if $(CLK_MHZ),--clk-mhz $(CLK_MHZ)) --report build/bitstream/$(BOARD)-$(BOARD_SIZE)/report.md
