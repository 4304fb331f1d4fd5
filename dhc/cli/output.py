"""Writing to the terminal without letting it decide the verdict.

A reader that went away (``dhc run | head``, a journald restart) or a full disk behind stdout must
never turn a verdict into a crash or into another exit code: what cannot be written is said on
stderr (itself guarded), fd 1 is pointed at /dev/null so the interpreter's last flush cannot fail,
and the caller's exit code stands.
"""

from __future__ import annotations

import os
import sys


def to_stdout(text: str, lost: str) -> None:
    """Print ``text``; if stdout will not take it, say so on stderr, ending with ``lost`` (where the answer is)."""
    try:
        if sys.stdout is None:
            raise OSError("stdout is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        silence_stdout()
        warn(f"stdout did not take the answer ({getattr(exc, 'strerror', None) or exc}); {lost}")


def silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's last flush cannot fail and change the exit status."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    except OSError:
        pass


def warn(text: str) -> None:
    """``dhc: text`` on stderr; a closed or full stderr is ignored (the verdict does not depend on it)."""
    try:
        sys.stderr.write(f"dhc: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
