"""`python -m autodep.loadtest`, the same as `autodep loadtest`."""

from __future__ import annotations

import sys

from autodep.loadtest.command import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m autodep.loadtest"))
