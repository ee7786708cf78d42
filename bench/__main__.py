"""`python -m bench ...`: the load tool's former name, kept working; it is now
`autodep loadtest` (autodep/loadtest/). The benchmarks are `python -m bench.NAME`
(see bench/README.md)."""

from __future__ import annotations

import sys

from autodep.loadtest.command import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m bench"))
