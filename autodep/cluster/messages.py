"""What crosses hosts between the controller, the agents and the routers (small, frozen).

Errors cross as `Failure` (status, message, headers), never as pickled
exception objects; payloads cross as bytes, tensors as numpy arrays (Ray puts
large ones in its object store, out of band).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autodep.autoscale.policy import Observation
from autodep.errors import AutodepError, ShuttingDown


class RemoteError(AutodepError):
    """An error another node answered, with its status kept."""

    def __init__(self, status: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.status = status


@dataclass(frozen=True)
class Failure:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    elsewhere: bool = False  # the node is shutting down: another node may serve it

    @classmethod
    def of(cls, error: AutodepError) -> Failure:
        draining = isinstance(error, ShuttingDown)
        return cls(error.status, error.message, dict(error.headers), draining)

    def error(self) -> RemoteError:
        return RemoteError(self.status, self.message, self.headers)


@dataclass(frozen=True)
class ModelReport:
    """One model on one node, for one tick."""

    observation: Observation
    live: int  # workers starting or serving
    ready: int  # workers idle or busy
    outstanding: int  # requests queued or running
    service_s: float | None


@dataclass(frozen=True)
class NodeReport:
    node: str
    url: str
    models: dict[str, ModelReport]
    status: dict[str, Any]  # the node's /status, each worker with its node


@dataclass(frozen=True)
class Load:
    ready: int
    outstanding: int


@dataclass(frozen=True)
class ClusterView:
    """The controller's picture of the cluster, sent to every agent each tick."""

    agents: dict[str, Any]  # node id -> its agent's Ray actor handle
    cpus: dict[str, int]  # node id -> worker budget
    loads: dict[str, dict[str, Load]]  # node id -> model -> load
    allowed: dict[str, list[str]]  # model -> nodes that may run it
    statuses: dict[str, dict[str, Any]]  # node id -> that node's /status
