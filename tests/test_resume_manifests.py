"""The job auto-resume manifests: the example PyTorchJob validates against the real PyTorchJob CRD schema
(tests/data/kubeflow.org_pytorchjobs.schema.json, kubeflow/training-operator v1 at 374e88af, see its
$comment), and its RBAC validates against the Kubernetes schemas and grants no delete."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from dhc.resume.state import ResumeKeys

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "containers" / "k8s" / "examples" / "pytorchjob-auto-resume.yaml"
RBAC = ROOT / "containers" / "k8s" / "optional" / "rbac-job-auto-resume.yaml"
SCHEMA = json.loads((Path(__file__).parent / "data" / "kubeflow.org_pytorchjobs.schema.json").read_text())


def errors(obj):
    return [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(obj)]


def test_the_example_validates_against_the_pytorchjob_crd_schema_and_opts_in():
    example = yaml.safe_load(EXAMPLE.read_text())
    assert errors(example) == []
    keys, notes = ResumeKeys("sagemaker.amazonaws.com"), example["metadata"]["annotations"]
    assert notes[keys.enabled] == "true" and notes[keys.max_retries].isdigit()
    for replica in example["spec"]["pytorchReplicaSpecs"].values():
        assert replica["restartPolicy"] == "OnFailure"  # Never would end the job at the first failure
        assert replica["template"]["spec"]["nodeSelector"] == {keys.health: "Schedulable"}


@pytest.mark.parametrize("break_it,why", [
    (lambda o: o["spec"]["pytorchReplicaSpecs"]["Worker"].__setitem__("replicas", "three"), "is not of type 'integer'"),
    (lambda o: o["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"].pop("containers"), "'containers' is a required"),
    (lambda o: o["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"].__setitem__("nodeSelector", ["x"]),
     "is not of type 'object'")])
def test_the_schema_check_can_fail(break_it, why):
    broken = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    break_it(broken)
    assert any(why in message for message in errors(broken)), errors(broken)


def test_the_rbac_validates_and_never_deletes():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objects = list(yaml.safe_load_all(RBAC.read_text()))
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    [role] = [o for o in objects if o["kind"] == "ClusterRole"]
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted[("kubeflow.org", "pytorchjobs")] == {"get", "list", "patch"}
    assert granted[("", "pods")] == {"list", "watch"} and granted[("", "events")] == {"create"}
    assert not any("delete" in verbs for verbs in granted.values())
    [binding] = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dhc-controller", "namespace": "dhc"}]
