"""The ``agent:`` section of thresholds.yaml: ``dhc agent``'s detectors, their limits and actions.

Every detector of the passive watch has a stable dotted id and an entry here, with the action its
finding asks for (``None`` | ``Reboot`` | ``Replace``) and its own numbers (windows, counts,
percentages). The section is validated like the rest of the file: an error names the file, the
line, the key and what was expected. Debounce and escalation live here too, so they are explicit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dhc.errors import ConfigError
from dhc.model import Action
from dhc.thresholds.loader import LineDict, load_yaml
from dhc.thresholds.validate import Doc

DAY_S = 86_400.0
# detector id -> {key: (bounds, whole number)}; every detector also takes ``action`` and ``source``
DETECTORS: dict[str, dict[str, tuple[tuple[float, float], bool]]] = {
    "agent.xid": {"app_repeat": ((1, 1000), True), "app_window_s": ((1, DAY_S), False)},
    "agent.gpu-lost": {},
    "agent.sxid": {},
    "agent.kernel-deadlock": {"blocked_s": ((1, DAY_S), False)},
    "agent.oom": {},
    "agent.gpu-count": {},
    "agent.ecc": {"rise": ((1, 1e9), True)},
    "agent.remap": {},
    "agent.nvlink": {},
    "agent.clocks": {"window_s": ((1, DAY_S), False), "reasons_mask": ((1, 2**64 - 1), True)},
    "agent.efa": {},
    "agent.disk": {"max_used_percent": ((1, 100), False)},
}
EXTRA_ACTIONS = {"agent.remap": ("failed_action",), "agent.disk": ("full_action",)}
TOP = {"poll_s": ((0.05, 3600), False), "escalation_window_s": ((0, 30 * DAY_S), False),
       "detectors": None}


@dataclass(frozen=True)
class Detector:
    id: str
    action: Action
    values: dict[str, float]
    actions: dict[str, Action]  # further actions a detector distinguishes (remap failed, disk full)
    source: str

    def value(self, key: str) -> float:
        return self.values[key]


@dataclass(frozen=True)
class AgentLimits:
    path: str
    poll_s: float  # NVML, sysfs and the disk are read this often
    escalation_window_s: float  # the same Reboot-class fault again this soon after a reboot: Replace
    detectors: dict[str, Detector]

    def __getitem__(self, detector: str) -> Detector:
        return self.detectors[detector]


def load_agent(path: str | Path | None = None) -> AgentLimits:
    from dhc.thresholds import default_path

    file = default_path(str(path) if path else None)
    raw = load_yaml(file)
    if not isinstance(raw, LineDict) or "agent" not in raw:
        raise ConfigError(str(file), None, "agent", "missing the agent: section (dhc agent's detector limits)")
    return parse_agent(raw, str(file))


def parse_agent(top: LineDict, path: str) -> AgentLimits:
    doc = Doc(path)
    section = doc.mapping(top, "agent", "agent", set(TOP), set(TOP))
    entries = doc.mapping(section, "detectors", "agent/detectors", set(DETECTORS), set(DETECTORS))
    detectors = {name: _detector(doc, entries, name) for name in DETECTORS}
    return AgentLimits(path, doc.number(section, "poll_s", "agent/poll_s", bounds=TOP["poll_s"][0]),
                       doc.number(section, "escalation_window_s", "agent/escalation_window_s",
                                  bounds=TOP["escalation_window_s"][0]), detectors)


def _detector(doc: Doc, entries: LineDict, name: str) -> Detector:
    keypath = f"agent/detectors/{name}"
    numbers, extra = DETECTORS[name], EXTRA_ACTIONS.get(name, ())
    keys = set(numbers) | {"action", "source", *extra}
    node = doc.mapping(entries, name, keypath, keys, keys)
    values = {key: doc.number(node, key, f"{keypath}/{key}", integer=whole, bounds=bounds)
              for key, (bounds, whole) in numbers.items()}
    actions = {key: _action(doc, node, key, f"{keypath}/{key}") for key in extra}
    return Detector(name, _action(doc, node, "action", f"{keypath}/action"), values, actions,
                    doc.text(node, "source", f"{keypath}/source"))


def _action(doc: Doc, node: LineDict, key: str, keypath: str) -> Action:
    if node[key] is None:  # YAML reads a bare None as the text "None"; ~ and null mean the same
        return Action.NONE
    return Action(doc.choice(node, key, keypath, Action))
