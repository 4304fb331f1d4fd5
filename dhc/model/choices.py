"""The choices a run is made of, each defined once, and the one wording for a value that is none of them.

The profiles (``thresholds.yaml`` defines each one's timings; the report schema's enum is generated
from them), the default profile every command and file falls back to, and the stages a node's
verdict is handed over in. Everything that offers or validates one of these imports it from here:
flags, the run configuration, the thresholds and controller files, the termination message and the
controller's metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

PROFILES = ("quick", "full")
DEFAULT_PROFILE = "quick"
SUITES = {"stress": "InstanceStress", "connectivity": "InstanceConnectivity"}  # check id prefix -> suite
STAGES = ("final", "stress")  # the last verdict, or the one after the stress suite (a connectivity group follows)


def not_one_of(choices: Iterable[str], got: object) -> str | None:
    """``"expected one of a, b, got 'x'"`` when ``got`` is not one of ``choices`` (text compared as text), else None."""
    allowed = tuple(str(c) for c in choices)
    if isinstance(got, str) and got in allowed:
        return None
    hint = " (YAML reads an unquoted yes/no/on/off as true/false)" if isinstance(got, bool) else ""
    return f"expected one of {', '.join(allowed)}, got {got!r}{hint}"
