"""The Kubernetes controller: checks nodes as they join, and turns Jobs into verdicts on the nodes.

It never imports torch or pytest; everything it says to the API server goes through ``dhc.k8s``.
"""
