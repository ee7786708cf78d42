"""The benchmarks' real server: `autodep.testing.server`, shared with the pytest plugin."""

from autodep.testing.server import ServerProcess, stop_all

__all__ = ["ServerProcess", "stop_all"]
