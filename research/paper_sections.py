"""The report's sections, in order: adding one is one `Section` here.

Each section's `measure` reuses its bench script's own functions; the sections
of benches that other branches add (optimize, faults, rollout, cluster) run the
module's command line and show what it printed and the figures it wrote, until
someone gives them a section of their own.
"""

from __future__ import annotations

from research.paper_autoscaling import measure_autoscaling, render_autoscaling
from research.paper_base import Section, register
from research.paper_external import external
from research.paper_process import (
    measure_startup,
    measure_transport,
    render_startup,
    render_transport,
)
from research.paper_serving import (
    measure_latency,
    measure_throughput,
    render_latency,
    render_throughput,
)

for _section in (
    Section(
        "transport",
        "Transport",
        measure_transport,
        render_transport,
        how="tensor round trip: shared memory + msgpack vs pickle through a Pipe",
    ),
    Section(
        "startup",
        "Worker start",
        measure_startup,
        render_startup,
        how="start request to ready and to first result: forkserver vs spawn",
    ),
    Section(
        "latency",
        "Latency of one request",
        measure_latency,
        render_latency,
        how="p50 at concurrency 1: autodep and plain server vs in-process, in turns",
    ),
    Section(
        "throughput",
        "Throughput and latency under load",
        measure_throughput,
        render_throughput,
        how="closed loop at 1-32 clients: autodep vs plain server vs in-process limit",
    ),
    Section(
        "autoscaling",
        "Autoscaling",
        measure_autoscaling,
        render_autoscaling,
        module="research.experiments",
        how="seeded open-loop schedules: autoscaler vs fixed pools of 1 and 2",
    ),
):
    register(_section)

for _name, _title in (
    ("optimize", "Optimization"),
    ("faults", "Faults"),
    ("rollout", "Rollout"),
    ("cluster", "Scale-out"),
):
    _measure, _render = external(_name)
    register(
        Section(_name, _title, _measure, _render, module=f"bench.{_name}", how=f"`bench.{_name}`")
    )
