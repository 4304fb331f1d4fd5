"""Probes: what the machine says about itself (NVML, /proc, external tools). No pytest, no torch."""
