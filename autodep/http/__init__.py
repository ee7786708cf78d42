"""The HTTP API: translates requests into `Autodep` calls and results into JSON."""
