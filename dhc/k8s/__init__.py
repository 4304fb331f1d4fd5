"""Kubernetes: the API client wrapper (``client``) and the node scheme (``scheme``).

The ``kubernetes`` package is imported here and nowhere else in dhc.
"""
