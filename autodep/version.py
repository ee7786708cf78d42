"""The package version (one place: setup.cfg reads it, the V2 server metadata reports it)."""

__version__ = "0.1.0"
