"""The check pod's sink: hand the verdict to the controller through the container's termination message.

The pod needs no API access for this (its token is not even mounted): the kubelet copies the file
into the pod's status when the container ends, and the controller, which watches its Jobs, reads
it from there and writes the node. Runs after the report is safely on disk.
"""

from __future__ import annotations

from pathlib import Path

from dhc.k8s import message
from dhc.model.report import Report

DEFAULT_PATH = "/dev/termination-log"


def write(document: Report, stage: str, path: str = DEFAULT_PATH) -> str:
    """Write the compact verdict to ``path`` and return it.

    Written in place, not renamed over: the kubelet bind-mounts the file, and a rename onto a mount
    point fails (EBUSY). One write of at most 4096 bytes.
    """
    text = message.encode(document, stage)
    Path(path).write_text(text)
    return text

