"""The Job that checks one node: pinned to it, tolerating dhc's and the usual GPU/EFA taints,
asking for all its GPUs and EFA devices, bounded by the profile's timeouts, named deterministically;
and the Indexed Job of a connectivity batch. Their pods hand the verdict back in their termination
message (``dhc run --sink termination``); what the pods may do is ``podspec``'s.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from dhc.controller import podspec
from dhc.k8s.scheme import Keys, label_value
from dhc.model.choices import DEFAULT_PROFILE, SUITES

JOB_LABEL = "app.kubernetes.io/managed-by"
NODE_LABEL = "dhc.dev/node"  # a label value: the name cut to fit, with a hash of the whole name
ATTEMPT_LABEL = "dhc.dev/attempt"
NODE_ANNOTATION = "dhc.dev/node-name"  # the node's full name: checked before a Job's outcome is used
NODES_ANNOTATION = "dhc.dev/nodes"  # a connectivity batch's nodes
TOPOLOGY_ANNOTATION = "dhc.dev/topology"  # where a connectivity group's nodes sit: layer-1/layer-2/layer-3, ...
STAGE_ANNOTATION = "dhc.dev/stage"  # stress | final | connectivity: what a verdict of this Job means
TYPE_ANNOTATION = "dhc.dev/instance-type"  # the profile the Job was told to judge against
CONTAINER = "dhc"


@dataclass(frozen=True)
class JobSettings:
    namespace: str = "dhc"
    image: str = ""  # required: a pinned tag or a digest (see pinned_image)
    service_account: str = "dhc-node"  # bound to no role: the pod makes no API calls
    profile: str = DEFAULT_PROFILE
    suite: str = SUITES["stress"]
    ttl_s: int = 3600
    extra_args: tuple[str, ...] = ()
    connectivity: bool = True  # after stress passes, nodes that joined together test their fabric
    rendezvous_port: int = 29500
    cpu: float = 4.0  # CPU request (cores), at most a quarter of the node's allocatable
    memory_gib: float = 16.0  # memory request besides /dev/shm, at most a quarter of the node's allocatable


def pinned_image(image: str) -> str:
    """The image if it names one build (a tag other than latest, or a digest); ValueError otherwise."""
    name, _, digest = image.partition("@")
    if digest:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"image {image!r}: a digest must be sha256:<64 hex digits>")
        return image
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    if not tag or tag == "latest":
        raise ValueError(f"image {image!r}: name a pinned build (a tag other than 'latest', or @sha256:<digest>); "
                         "a moving tag makes each node's check run whatever the tag points to that day")
    return image


def node_label(node: str) -> str:
    """A label value for the node: the name cut to fit 63 characters, with a hash of the whole name."""
    digest = hashlib.sha256(node.encode()).hexdigest()[:10]
    return label_value(f"{label_value(node)[:52]}-{digest}")


def job_name(node: str, generation: int, attempt: int) -> str:
    """Deterministic, valid (<= 63 chars) and distinct per node (a hash of the full name): a restarted
    controller finds, never duplicates, its Jobs, and two nodes never share one."""
    base = re.sub(r"[^a-z0-9-]", "-", node.lower()).strip("-")
    suffix = f"-{hashlib.sha256(node.encode()).hexdigest()[:8]}-g{generation}-a{attempt}"
    return f"dhc-{base[: 63 - 4 - len(suffix)].strip('-')}{suffix}"


def job_manifest(node: str, generation: int, attempt: int, instance_type: str, gpus: int, efa: int,
                 deadline_s: int, keys: Keys, settings: JobSettings,
                 allocatable: dict[str, str] | None = None) -> dict[str, Any]:
    stage = "stress" if settings.connectivity else "final"
    command = ["dhc", "run", "--suite", settings.suite, "--profile", settings.profile, "--instance-type",
               instance_type, "--sink", "termination", "--stage", stage, *settings.extra_args]
    labels = {JOB_LABEL: "dhc", NODE_LABEL: node_label(node), ATTEMPT_LABEL: f"g{generation}-a{attempt}"}
    vols, mounts = podspec.volumes(gpus)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(node, generation, attempt), "namespace": settings.namespace, "labels": labels,
                     "annotations": {NODE_ANNOTATION: node, STAGE_ANNOTATION: stage, TYPE_ANNOTATION: instance_type}},
        "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": int(deadline_s), "ttlSecondsAfterFinished": settings.ttl_s,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # by the scheduler, not nodeName: a joining node's pod waits until the device plugins
                    # advertise its GPUs and EFA devices, instead of failing the kubelet's admission at once
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}},
                    "restartPolicy": "Never", "serviceAccountName": settings.service_account,
                    "automountServiceAccountToken": False, "enableServiceLinks": False,
                    "securityContext": podspec.pod_security_context(),
                    "tolerations": [
                        {"key": keys.health, "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "vpc.amazonaws.com/efa", "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": CONTAINER, "image": settings.image, "command": command, "env": podspec.env(),
                        "workingDir": "/var/lib/dhc",  # reports land in /var/lib/dhc/reports/<instance>-<time>
                        "resources": podspec.resources(gpus, efa, allocatable, settings.cpu, settings.memory_gib),
                        "securityContext": podspec.security_context(),
                        "terminationMessagePath": podspec.TERMINATION_LOG, "terminationMessagePolicy": "File",
                        "volumeMounts": mounts,
                    }],
                    "volumes": vols,
                },
            },
        },
    }


BATCH_LABEL = "dhc.dev/batch"


def batch_name(nodes: list[str], attempt: int) -> str:
    """Deterministic for the same nodes and try: a restarted controller re-creates nothing."""
    digest = hashlib.sha256("\n".join(sorted(nodes)).encode()).hexdigest()[:10]
    return f"dhc-fabric-{digest}-a{attempt}"


def batch_manifests(nodes: list[str], attempt: int, instance_type: str, gpus: int, efa: int, deadline_s: int,
                    keys: Keys, settings: JobSettings, allocatable: dict[str, str] | None = None,
                    topology: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """A headless Service and an Indexed Job: one pod on each node, meeting at pod 0 for torch's rendezvous.
    ``topology`` (where the nodes sit in the network) is annotated on the Job, to read results by switch."""
    name = batch_name(nodes, attempt)
    labels = {JOB_LABEL: "dhc", BATCH_LABEL: name}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
               "spec": {"clusterIP": "None", "selector": {BATCH_LABEL: name}, "publishNotReadyAddresses": True,
                        "ports": [{"name": f"rendezvous-{i}", "port": settings.rendezvous_port + i} for i in range(3)]}}
    job = job_manifest(nodes[0], 0, attempt, instance_type, gpus, efa, deadline_s, keys, settings, allocatable)
    job["metadata"].update(name=name, labels=dict(labels), annotations={
        NODES_ANNOTATION: ",".join(sorted(nodes)), STAGE_ANNOTATION: "connectivity", TYPE_ANNOTATION: instance_type,
        **({TOPOLOGY_ANNOTATION: topology} if topology else {})})
    spec = job["spec"]
    spec.update(completionMode="Indexed", completions=len(nodes), parallelism=len(nodes))
    pod = spec["template"]["spec"]
    spec["template"]["metadata"]["labels"] = dict(labels)
    pod["subdomain"] = name
    pod["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": sorted(nodes)}]}]}},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {BATCH_LABEL: name}}, "topologyKey": "kubernetes.io/hostname"}]},
    }
    container = pod["containers"][0]
    container["command"] = ["dhc", "run", "--suite", SUITES["connectivity"], "--profile", settings.profile,
                            "--instance-type", instance_type, "--sink", "termination", *settings.extra_args]
    container["env"] += [{"name": "DHC_NODES", "value": str(len(nodes))},
                         {"name": "DHC_RENDEZVOUS", "value": f"{name}-0.{name}:{settings.rendezvous_port}"}]
    return service, job
