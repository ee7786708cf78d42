"""`ServedModel`: one loaded model version and what serves it."""

from __future__ import annotations

from dataclasses import dataclass, field

from autodep.codecs import Codec
from autodep.config import ModelConfig
from autodep.optimize.plan import Plan
from autodep.optimize.resolve import Variant
from autodep.pool.pool import ModelPool
from autodep.repository.inflight import InFlight


@dataclass(eq=False)
class ServedModel:
    config: ModelConfig
    codec: Codec
    pool: ModelPool
    variant: Variant
    version: int = 1
    plan: Plan | None = None  # None: the settings as configured (no plan search)
    plan_note: str | None = None  # why there is no plan, when the search failed
    # Requests holding this version (Service.request): a reload retires it only
    # once they are done, and requests to other versions or models never delay it.
    in_flight: InFlight = field(default_factory=InFlight)
