"""The controller's configuration file: node groups, chosen by label selector, and what each gets.

As HyperPod configures resiliency per instance group, each group says which deep checks run when a
node joins (``OnStartDeepHealthChecks``: ``[InstanceStress, InstanceConnectivity]``, stress only
``[InstanceStress]``, or none ``[]``), the profile (quick | full), and ``NodeRecovery``
(``Automatic``: remediation acts on its marked nodes; ``None``: labels, conditions and Events only),
and how its nodes form connectivity groups (``ConnectivityGroupSize``: the most nodes in one group;
``TopologyLabel``: the node label that places a node in the network, instead of EKS's
``topology.k8s.aws/network-node-layer-*``; both fall back to the command line).
Groups are chosen by a Kubernetes label selector (``matchLabels`` / ``matchExpressions``), e.g.
HyperPod's ``sagemaker.amazonaws.com/instance-group-name``. A node matches the FIRST group that
selects it, in file order; a node in no group gets ``defaults`` (each key falling back to the
command line: both stages, ``--profile``, Automatic). The file is read through thresholds' YAML
loader, so every error names the file, the line, the key and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dhc.errors import ConfigError
from dhc.model.choices import DEFAULT_PROFILE, PROFILES
from dhc.thresholds import SUITES
from dhc.thresholds.loader import LineDict, load_yaml
from dhc.thresholds.validate import Doc

STRESS, CONNECTIVITY = SUITES["stress"], SUITES["connectivity"]
CHECK_SETS = {(): (), (STRESS,): (STRESS,), (STRESS, CONNECTIVITY): (STRESS, CONNECTIVITY),
              (CONNECTIVITY, STRESS): (STRESS, CONNECTIVITY)}
RECOVERY = ("Automatic", "None")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
SETTINGS = {"OnStartDeepHealthChecks", "profile", "NodeRecovery", "ConnectivityGroupSize", "TopologyLabel"}
GROUP_KEYS = SETTINGS | {"name", "selector"}


@dataclass(frozen=True)
class Selector:
    match_labels: dict[str, str] = field(default_factory=dict)
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (key, operator, values)

    def selects(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(_expression(labels, key, op, values) for key, op, values in self.expressions)


def _expression(labels: dict[str, str], key: str, op: str, values: tuple[str, ...]) -> bool:
    return {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
            "Exists": key in labels, "DoesNotExist": key not in labels}[op]


@dataclass(frozen=True)
class Group:
    name: str
    checks: tuple[str, ...] = (STRESS, CONNECTIVITY)
    profile: str = DEFAULT_PROFILE
    recovery: str = "Automatic"
    selector: Selector = field(default_factory=Selector)
    group_size: int = 0  # the most nodes in one connectivity group (0: the command line's --group-size)
    topology_label: str = ""  # the label that places a node in the network ('': the command line's)

    @property
    def connectivity(self) -> bool:
        return CONNECTIVITY in self.checks

    @property
    def automatic(self) -> bool:
        return self.recovery == "Automatic"


@dataclass(frozen=True)
class Groups:
    path: str = ""
    groups: tuple[Group, ...] = ()
    default: Group = field(default_factory=lambda: Group("default"))

    def of(self, labels: dict[str, str]) -> Group:
        """The first group whose selector matches, in file order; else the defaults."""
        return next((g for g in self.groups if g.selector.selects(labels)), self.default)

    def named(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)


def plain(profile: str = DEFAULT_PROFILE, connectivity: bool = True) -> Groups:
    """No configuration file: every node gets what the command line says (dhc's behaviour before groups)."""
    return Groups("", (), Group("default", (STRESS, CONNECTIVITY) if connectivity else (STRESS,), profile))


def load(path: str | Path, profile: str = DEFAULT_PROFILE, connectivity: bool = True) -> Groups:
    """Read and validate the file; ConfigError names file, line, key and what was expected."""
    raw = load_yaml(Path(path))
    doc, base = Doc(str(path)), plain(profile, connectivity).default
    if not isinstance(raw, LineDict):
        raise ConfigError(str(path), None, "", "expected a mapping with groups: (and optionally defaults:)")
    top = doc.keys(raw, "", {"defaults", "groups"}, {"groups"})
    default = _settings(doc, doc.mapping(top, "defaults", "defaults", SETTINGS), "defaults", base) \
        if "defaults" in top else base
    entries = top["groups"]
    if not isinstance(entries, list):
        raise doc.fail(top, "groups", "groups", "expected a list of groups (name, selector, settings)")
    groups: list[Group] = []
    for index, entry in enumerate(entries):
        group = _group(doc, entry, f"groups/{index}", default)
        if any(g.name == group.name for g in groups):
            raise doc.fail(entry, "name", f"groups/{index}/name", f"duplicate group name {group.name!r}")
        groups.append(group)
    return Groups(str(path), tuple(groups), default)


def _group(doc: Doc, entry: Any, keypath: str, default: Group) -> Group:
    if not isinstance(entry, LineDict):
        raise doc.fail(None, None, keypath, "expected a mapping (name, selector and the group's settings)")
    entry = doc.keys(entry, keypath, GROUP_KEYS, {"name", "selector"})
    name = doc.text(entry, "name", f"{keypath}/name")
    selector = _selector(doc, doc.mapping(entry, "selector", f"{keypath}/selector",
                                          {"matchLabels", "matchExpressions"}), f"{keypath}/selector")
    return replace(_settings(doc, entry, keypath, default), name=name, selector=selector)


def _settings(doc: Doc, node: LineDict, keypath: str, base: Group) -> Group:
    checks, profile, recovery = base.checks, base.profile, base.recovery
    if "OnStartDeepHealthChecks" in node:
        value = node["OnStartDeepHealthChecks"]
        if not isinstance(value, list) or tuple(value) not in CHECK_SETS:
            raise doc.fail(node, "OnStartDeepHealthChecks", f"{keypath}/OnStartDeepHealthChecks",
                           f"expected [{STRESS}, {CONNECTIVITY}], [{STRESS}] or [], got {value!r}")
        checks = CHECK_SETS[tuple(value)]
    if "profile" in node:
        profile = doc.choice(node, "profile", f"{keypath}/profile", PROFILES)
    if "NodeRecovery" in node:
        recovery = doc.choice(node, "NodeRecovery", f"{keypath}/NodeRecovery", RECOVERY)
    return replace(base, checks=checks, profile=profile, recovery=recovery, **_grouping(doc, node, keypath))


def _grouping(doc: Doc, node: LineDict, keypath: str) -> dict[str, Any]:
    """ConnectivityGroupSize (a whole number, 1 or more) and TopologyLabel (a label key), where given."""
    given: dict[str, Any] = {}
    if "ConnectivityGroupSize" in node:
        size = node["ConnectivityGroupSize"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise doc.fail(node, "ConnectivityGroupSize", f"{keypath}/ConnectivityGroupSize",
                           f"expected the most nodes in one connectivity group, a whole number of 1 or more, got {size!r}")
        given["group_size"] = size
    if "TopologyLabel" in node:
        given["topology_label"] = doc.text(node, "TopologyLabel", f"{keypath}/TopologyLabel")
    return given


def _selector(doc: Doc, node: LineDict, keypath: str) -> Selector:
    labels = doc.mapping(node, "matchLabels", f"{keypath}/matchLabels") if "matchLabels" in node else LineDict()
    for key, value in labels.items():
        if not isinstance(value, str) or not value:
            raise doc.fail(labels, key, f"{keypath}/matchLabels/{key}",
                           f"expected a label value as quoted text, got {value!r}")
    raw = node.get("matchExpressions", [])
    if not isinstance(raw, list):
        raise doc.fail(node, "matchExpressions", f"{keypath}/matchExpressions", "expected a list of expressions")
    expressions = tuple(_expression_of(doc, e, f"{keypath}/matchExpressions/{i}") for i, e in enumerate(raw))
    if not labels and not expressions:
        raise doc.fail(node, None, keypath, "an empty selector would select every node; "
                       "give matchLabels or matchExpressions (settings for all other nodes go under defaults:)")
    return Selector(dict(labels), expressions)


def _expression_of(doc: Doc, entry: Any, keypath: str) -> tuple[str, str, tuple[str, ...]]:
    if not isinstance(entry, LineDict):
        raise doc.fail(None, None, keypath, "expected a mapping with key, operator and values")
    entry = doc.keys(entry, keypath, {"key", "operator", "values"}, {"key", "operator"})
    key = doc.text(entry, "key", f"{keypath}/key")
    op = doc.choice(entry, "operator", f"{keypath}/operator", OPERATORS)
    values = entry.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise doc.fail(entry, "values", f"{keypath}/values", f"expected a list of quoted label values, got {values!r}")
    if (op in ("In", "NotIn")) != bool(values):
        want = "a non-empty values list" if op in ("In", "NotIn") else "no values"
        raise doc.fail(entry, "operator", f"{keypath}/operator", f"operator {op} takes {want}")
    return key, op, tuple(values)


def unchecked(group: Group, node: dict[str, Any], keys: Any) -> bool:
    """A node of a group without deep checks that dhc has no business with yet: no re-check asked for, no
    run of dhc's on it, and no Passed label (a Passed nobody earned is still checked: it must be earned)."""
    meta = node.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return not group.checks and keys.request not in labels and keys.generation not in annotations \
        and labels.get(keys.check_status) != "Passed"
