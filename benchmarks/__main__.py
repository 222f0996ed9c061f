"""Run benchmarks: ``python -m benchmarks NAME [NAME ...] [--quick] [--out DIR]`` or ``--all``.

``--quick`` is a smoke run at tiny sizes (every peer's asserts execute; the timings mean little); records go to
``benchmarks/results`` unless ``--out DIR`` names another folder.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from pathlib import Path

from benchmarks.common import commit, setup_threads, write_record


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> None:
    """The command line above; ``argv`` defaults to ``sys.argv[1:]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run; available: {', '.join(available())}")
    parser.add_argument("--all", action="store_true", help="run every benchmark")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run: asserts execute)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON records "
                        "(default benchmarks/results)")
    args = parser.parse_args(argv)
    names = available() if args.all else args.names
    if not names:
        parser.error(f"name a benchmark or use --all; available: {', '.join(available())}")
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {', '.join(available())}")
    setup_threads()
    started_at = commit()
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        record = module.run(quick=args.quick)
        path = write_record(module.NAME, {"quick": args.quick, **record}, args.out, started_at=started_at)
        print(json.dumps(record.get("summary", record), indent=2, default=float))
        print(f"[{module.NAME}] record written to {path}")


if __name__ == "__main__":
    main()
