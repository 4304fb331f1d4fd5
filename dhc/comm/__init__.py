"""Collectives and their launch: all-reduce bus bandwidth, local ranks with explicit rendezvous.

The same code runs NCCL on GPUs and gloo on CPU tensors. No pytest, no NVML, no Kubernetes.
"""
