"""The `autodep` console script: `autodep serve --model m.pt ...`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from autodep import serve


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "serve":
        print("usage: autodep serve [--model PATH ...] [--config models.yaml] [options]")
        print("       autodep serve --help")
        return 2
    return serve.main(args[1:], prog="autodep serve")


if __name__ == "__main__":
    sys.exit(main())
