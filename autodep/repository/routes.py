"""The routing table: which loaded version a request for (name, version) finds.

Only `Repository` changes it; everyone else asks `Repository.get(name, version)`
or gets a copy (`models()`, `pools()`).
"""

from __future__ import annotations

from dataclasses import dataclass

from autodep.errors import ModelNotFound
from autodep.pool.pool import ModelPool
from autodep.repository.served import ServedModel
from autodep.repository.versions import ModelVersion, State


@dataclass(eq=False)
class Instance:
    """A loaded version: its lifecycle record and what serves it."""

    record: ModelVersion
    served: ServedModel

    @property
    def key(self) -> str:
        """Its name in the autoscaler's view (several loads of one model may coexist)."""
        return f"{self.record.model}/{self.record.number}#{self.record.id}"


class Routes:
    def __init__(self) -> None:
        self._instances: list[Instance] = []  # every live (loading, ready, draining) version
        self._newest: dict[str, ServedModel] = {}  # the newest ready version of each model
        self._pools: dict[str, ModelPool] = {}  # routed and draining versions, by Instance.key

    # -- changes (the repository's) ------------------------------------------

    def add(self, instance: Instance) -> None:
        """A version that is loading: live, not yet routed."""
        self._instances.append(instance)

    def route(self, instance: Instance) -> None:
        """A READY version: requests find it (the newest of its model by default)."""
        self._pools[instance.key] = instance.served.pool
        self.publish(instance.record.model)

    def publish(self, name: str) -> None:
        """After state changes: get(name) finds the newest ready version, or nothing."""
        routed = self.routed(name)
        if routed:
            self._newest[name] = max(routed, key=lambda i: (i.record.number, i.record.id)).served
        else:
            self._newest.pop(name, None)

    def remove(self, instance: Instance) -> None:
        """A version that failed or was unloaded: gone from the table and the pools."""
        self._pools.pop(instance.key, None)
        self._instances.remove(instance)

    # -- lookups -------------------------------------------------------------

    def get(self, name: str | None = None, version: int | None = None) -> ServedModel:
        """A model's newest ready version, or its ready version `version` (404 otherwise).

        `name` None: the only model served (several: 404 asking to name one).
        """
        if name is None:
            if len(self._newest) != 1:
                raise ModelNotFound(
                    f"several models are served ({', '.join(self._newest)}); "
                    "name one: POST /predict/{model}"
                )
            name = next(iter(self._newest))
        served = self._newest.get(name)
        if served is None:
            raise ModelNotFound(f"no model named {name!r}; served: {', '.join(self._newest)}")
        if version is None:
            return served
        ready = [i for i in self.routed(name) if i.record.number == version]
        if not ready:
            numbers = sorted({i.record.number for i in self.routed(name)})
            raise ModelNotFound(
                f"model {name!r} has no ready version {version}; ready: "
                f"{', '.join(map(str, numbers)) or 'none'}"
            )
        return max(ready, key=lambda i: i.record.id).served

    def routed(self, name: str) -> list[Instance]:
        """The model's READY versions."""
        return [
            i for i in self._instances if i.record.model == name and i.record.state is State.READY
        ]

    def live(self) -> list[Instance]:
        """Every loading, ready or draining version."""
        return list(self._instances)

    def models(self) -> dict[str, ServedModel]:
        return dict(self._newest)

    def pools(self) -> dict[str, ModelPool]:
        return dict(self._pools)
