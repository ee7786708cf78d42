"""The HTTP API: translates requests into `Service` calls and results into JSON."""
