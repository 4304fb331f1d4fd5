"""Sinks: where a finished verdict goes (log lines here; CloudWatch and Kubernetes in their issues)."""
