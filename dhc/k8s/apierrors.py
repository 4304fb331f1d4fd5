"""What the Kubernetes API server's refusals mean to dhc: its own exceptions, each saying whether it is permanent.

A 400, 401, 403, 404 or an invalid 422 will fail the same way until something changes (RBAC, the
object, the request): ``permanent``, reported instead of retried. 5xx, 429, 408, 409 and a 422 from
a failed resourceVersion test (``K8sConflict``), timeouts and dropped connections are temporary and
worth another try later. A JSON patch the API server cannot apply (a ``test`` op that fails, as when
the resourceVersion moved on) is answered 422 Invalid with the generic Status message "the server
rejected our request due to an error in our request" and no object named (apiserver's patch handler:
NewGenericServerResponse); json-patch's own words are "testing value <path> failed". Only those are
conflicts: a 422 naming an object ("JobSet.jobset.x-k8s.io \"latest\" is invalid: ...") is validation,
permanent, whatever the object is called. ``translate`` turns the client's ``ApiException`` into one of these,
keeping the API server's own message (the Status body's ``message``: what RBAC or validation said).
"""

from __future__ import annotations

import json
import re
from typing import Any

from kubernetes.client.rest import ApiException

from dhc.errors import DhcError

RETRIED, TEMPORARY_4XX = {429, 500, 502, 503, 504}, {408, 409, 429}
PATCH_NOT_APPLIED = "the server rejected our request due to an error in our request"
_TEST_FAILED = re.compile(r"\btesting value \S* ?failed", re.IGNORECASE)


class K8sError(DhcError):
    """``what``: the verb and resource ("patch node gpu-1"); ``detail``: the API server's own message."""

    def __init__(self, message: str, status: int | None = None, what: str = "", detail: str = ""):
        super().__init__(message)
        self.status, self.what, self.detail = status, what, detail

    @property
    def permanent(self) -> bool:
        """True when trying again unchanged fails the same way: a 4xx other than 408/409/429."""
        return self.status is not None and 400 <= self.status < 500 and self.status not in TEMPORARY_4XX


class K8sNotFound(K8sError):
    """404: permanent (the object is gone)."""


class K8sConflict(K8sError):
    @property
    def permanent(self) -> bool:  # a 422 from a failed resourceVersion test is a conflict: re-read, try again
        return False


class K8sGone(K8sError):
    """A watch's resourceVersion is too old: list again."""


def translate(what: str, exc: ApiException) -> K8sError:
    """The client's exception as dhc's, naming the call (``what``) and what the API server said."""
    reason, detail = (exc.reason or "").strip(), api_message(exc.body)
    if exc.status == 404:
        return K8sNotFound(f"{what}: not found", 404, what, detail)
    if exc.status == 409 or (exc.status == 422 and test_failed(detail)):
        return K8sConflict(f"{what}: changed meanwhile ({exc.status})", exc.status, what, detail)
    said = f": {detail}" if detail else ""
    return K8sError(f"{what}: HTTP {exc.status} {reason}{said}", exc.status, what, detail)


def test_failed(message: str) -> bool:
    """Whether a 422's Status message is a JSON patch that did not apply (a failed ``test`` op), not validation."""
    return message.strip().startswith(PATCH_NOT_APPLIED) or bool(_TEST_FAILED.search(message))


def api_message(body: Any) -> str:
    """The ``message`` of the API server's Status body ('' when there is none): what RBAC or validation said."""
    try:
        status = json.loads(body) if isinstance(body, str | bytes) and body else {}
    except ValueError:
        return str(body)[:200]
    return str(status.get("message") or "")[:500] if isinstance(status, dict) else ""


def retry_after(exc: ApiException | None) -> float | None:
    """The seconds a 429/503's Retry-After header asks for (at most 30); None when it says none."""
    if exc is None or not exc.headers:
        return None
    try:
        return min(30.0, float(exc.headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None
