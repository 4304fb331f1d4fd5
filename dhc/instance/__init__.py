"""Who this instance is: instance ID and type, node, region, cluster, each with where it came from."""

from dhc.instance.identity import InstanceIdentity, Sourced, parse_provider_id, provider_instance_id, resolve_identity

__all__ = ["InstanceIdentity", "Sourced", "parse_provider_id", "provider_instance_id", "resolve_identity"]
