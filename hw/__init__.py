"""Amaranth description of the int8 systolic matrix-multiply core."""
