"""The exception tree shared by every layer of dhc.

User-facing configuration and usage problems derive from ``DhcError`` and carry a message that is
printed as is (never a traceback). Checks signal their outcome with the check-side exceptions below:
``HardwareFault`` makes a check ``Failed``, ``NotApplicable`` makes it ``Skipped``, and anything
else that escapes a check (including ``CheckIncomplete`` and ``CheckTimeout``) makes it ``Incomplete``.
"""

from __future__ import annotations


class DhcError(Exception):
    """Base of every error dhc reports to a user without a traceback."""


class UsageError(DhcError):
    """A command line or option value that cannot be honoured."""


class ConfigError(DhcError):
    """A configuration file that is broken; names the file, line, key and what was expected."""

    def __init__(self, path: str, line: int | None, key: str, problem: str):
        self.path, self.line, self.key, self.problem = path, line, key, problem
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class UnknownInstanceType(DhcError):
    def __init__(self, instance_type: str, known: list[str], path: str):
        self.instance_type, self.known = instance_type, known
        super().__init__(
            f"{path}: unknown instance type {instance_type!r}; known types: {', '.join(known)} "
            "(pass --instance-type cpu to run on a machine without GPUs)"
        )


class ReportError(DhcError):
    """A report that cannot be written or read."""


class CheckSignal(Exception):
    """Base of the exceptions a check raises to state its outcome."""


class HardwareFault(CheckSignal, AssertionError):
    """The hardware was measured outside its limit or misbehaved: the check is ``Failed``.

    ``device`` (a ``dhc.model.Device``) and ``action`` (a ``dhc.model.Action``) name the part at
    fault and what to do; the check's default action applies when ``action`` is None.
    """

    def __init__(self, message: str, device: object = None, action: object = None):
        super().__init__(message)
        self.device, self.action = device, action


class NotApplicable(CheckSignal):
    """The check does not apply to this instance type: the check is ``Skipped`` with this reason."""


class CheckIncomplete(CheckSignal):
    """The check could not decide (a tool is missing, output cannot be parsed): ``Incomplete``."""


class CheckTimeout(CheckIncomplete):
    """The check ran past its timeout."""
