"""Kernels: torch workloads that measure devices (GEMM burn, memtest). No pytest, no NVML, no Kubernetes.

The same code runs on CUDA GPUs and on CPU tensors.
"""
