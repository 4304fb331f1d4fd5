"""Where the files dhc ships live: in a wheel under ``dhc/_data``, in a source checkout at its top."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """``thresholds.yaml`` or ``suites``: the wheel's copy when installed, else the checkout's."""
    packaged = _PACKAGE / "_data" / name
    return packaged if packaged.exists() else _PACKAGE.parent / name
