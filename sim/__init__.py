"""cocotb testbenches for the core, the harness around it, and their runner."""
