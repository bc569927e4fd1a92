"""Run every benchmark module (`bench/bench_*.py`) or the ones named on the command line.

Each module exposes ``main() -> list[Ratio]``; it prints its own raw figures. Targets are
ratios against a baseline measured in the same run, because these machines are noisy.
The run exits 1 when any ratio misses its target.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from bench.harness import Ratio, report


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )
    ratios: list[Ratio] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n=== {name} ===", flush=True)
        ratios.extend(module.main())
    return report(ratios)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
