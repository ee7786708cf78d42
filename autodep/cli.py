"""The `autodep` console script: `autodep serve --model m.pt ...`, `autodep optimize m.pt`,
`autodep loadtest make|run|report|compare ...`,
`autodep batch --model m.pt --input SRC --output DST`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from autodep import serve


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        return serve.main(args[1:], prog="autodep serve")
    if args and args[0] == "optimize":
        from autodep.optimize.command import main as optimize

        return optimize(args[1:])
    if args and args[0] == "loadtest":
        from autodep.loadtest.command import main as loadtest

        return loadtest(args[1:])
    if args and args[0] == "batch":
        from autodep.batch.command import main as batch

        return batch(args[1:])
    print("usage: autodep serve [--model PATH ...] [--config models.yaml] [options]")
    print("       autodep optimize [MODEL ...] [--config models.yaml] [options]")
    print("       autodep loadtest make|run|report|compare ...")
    print("       autodep batch --model PATH --input SRC --output DST [options]")
    print("       autodep serve|optimize|loadtest|batch --help")
    return 2


if __name__ == "__main__":
    sys.exit(main())
