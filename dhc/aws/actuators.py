"""Actuators that reboot or replace instances: SageMaker HyperPod's batch calls, or EC2's own.

What the real services do:

- SageMaker ``BatchRebootClusterNodes`` / ``BatchReplaceClusterNodes`` (JSON protocol, target
  ``SageMaker.<Operation>``) take a ``ClusterName`` and 1 to 25 ``NodeIds`` (``i-`` and 8 or 17 hex
  digits), and answer 200 with ``Successful`` ids and ``Failed`` entries (``NodeId``, ``ErrorCode``,
  ``Message``) per node; a throttled call answers 400 ``ThrottlingException`` and did nothing.
- EC2 ``RebootInstances`` answers only success or an error for the whole call (an unknown id:
  ``InvalidInstanceID.NotFound``); ``TerminateInstances`` lists the instances' state changes. A
  self-managed node group's auto-scaling group brings a new node after a termination.

Only throttling is retried (here, with backoff; botocore's own retries are off): a throttled call was
not carried out, so its retry never acts twice. A 5xx answer, a read timeout or a connection lost
after the request was sent may have been carried out: never retried, it leaves as an
``ActuatorError`` with ``unconfirmed`` set, and the caller records the action as unconfirmed. A call
that never reached the service (no connection) or that it refused (4xx) was not carried out. Every
call has connect and read timeouts. Errors name the call, the ids and the service's code and message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from dhc.errors import DhcError

MAX_IDS = 25  # SageMaker's batch calls take at most 25 node ids


# botocore's throttling codes (retries/standard.py), EC2's RequestLimitExceeded among them
THROTTLING = {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
              "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
              "EC2ThrottledException", "BandwidthLimitExceeded"}


class ActuatorError(DhcError):
    def __init__(self, message: str, unconfirmed: bool = False):
        super().__init__(message)
        self.unconfirmed = unconfirmed  # the call may have been carried out: never call it again


def _client(service: str, region: str | None, endpoint_url: str | None, timeout_s: float) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=timeout_s,
                    read_timeout=timeout_s, parameter_validation=True)
    return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def _once(what: str, call: Callable[[], Any], attempts: int) -> Any:
    """``call()``, retried only while the service answers throttling; anything else, once."""
    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            code = (exc.response.get("Error") or {}).get("Code", "")
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode", 0)
            if code in THROTTLING and attempt + 1 < attempts:
                time.sleep(min(20.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.0))
                continue
            raise ActuatorError(_describe(what, exc), unconfirmed=status >= 500) from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:  # never reached the service
            raise ActuatorError(_describe(what, exc)) from None
        except BotoCoreError as exc:  # a read timeout, a connection lost after sending: maybe done
            raise ActuatorError(_describe(what, exc), unconfirmed=True) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + MAX_IDS] for i in range(0, len(ids), MAX_IDS)]


def _describe(what: str, exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        return f"{what}: {error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    return f"{what}: {exc}"


class HyperPod:
    """``hyperpod``: SageMaker batch reboot / replace of cluster nodes, 25 ids a call at most."""

    name = "hyperpod"

    def __init__(self, cluster: str, region: str | None = None, endpoint_url: str | None = None,
                 attempts: int = 8, timeout_s: float = 30.0):
        if not cluster:
            raise ValueError("the hyperpod actuator needs the cluster's name or ARN (--hyperpod-cluster)")
        self.cluster, self.attempts = cluster, attempts
        self.client = _client("sagemaker", region, endpoint_url, timeout_s)

    def act(self, action: str, ids: list[str]) -> dict[str, str]:
        """Reboot or Replace ``ids``: id -> "" when the service accepted it, else why not."""
        call = {"Reboot": self.client.batch_reboot_cluster_nodes,
                "Replace": self.client.batch_replace_cluster_nodes}[action]
        results: dict[str, str] = {}
        for chunk in _chunks(ids):
            what = f"SageMaker Batch{action}ClusterNodes {self.cluster} {','.join(chunk)}"
            answer = _once(what, lambda c=chunk: call(ClusterName=self.cluster, NodeIds=c), self.attempts)
            results |= {i: "" for i in answer.get("Successful") or []}
            results |= {f.get("NodeId", "?"): f"{f.get('ErrorCode', '?')}: {f.get('Message', '')}"
                        for f in answer.get("Failed") or []}
            results |= {i: "not in the service's answer" for i in chunk if i not in results}
        return results


class Ec2:
    """``ec2``: reboot or terminate instances (a self-managed group's auto-scaling brings a new node)."""

    name = "ec2"

    def __init__(self, region: str | None = None, endpoint_url: str | None = None, attempts: int = 8,
                 timeout_s: float = 30.0):
        self.attempts = attempts
        self.client = _client("ec2", region, endpoint_url, timeout_s)

    def act(self, action: str, ids: list[str]) -> dict[str, str]:
        what = f"EC2 {'RebootInstances' if action == 'Reboot' else 'TerminateInstances'} {','.join(ids)}"
        if action == "Reboot":
            _once(what, lambda: self.client.reboot_instances(InstanceIds=ids), self.attempts)
            return {i: "" for i in ids}
        answer = _once(what, lambda: self.client.terminate_instances(InstanceIds=ids), self.attempts)
        changed = {c.get("InstanceId") for c in answer.get("TerminatingInstances") or []}
        return {i: "" if i in changed else "not in the service's answer" for i in ids}


def build(kind: str, cluster: str = "", region: str | None = None, endpoint_url: str | None = None) -> Any:
    """The actuator named in configuration (``hyperpod`` or ``ec2``)."""
    if kind == "hyperpod":
        return HyperPod(cluster, region, endpoint_url)
    if kind == "ec2":
        return Ec2(region, endpoint_url)
    raise ValueError(f"actuator {kind!r}: expected hyperpod or ec2 (label-only needs no AWS)")
