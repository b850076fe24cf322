"""Run every ``bench/bench_*.py`` (or the ones named) one after another, each in a fresh process.

A fresh process per benchmark keeps start-up and memory figures honest (no warm imports).
Arguments after ``--`` go to each benchmark named (``scripts/bench soak -- --kills 20``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import machine  # noqa: E402

#: Run only when named: ``scale`` alone takes several minutes (four sizes up to 20,000 rooms);
#: ``soak`` about two (it kills the bridge over and over).
BY_NAME_ONLY = {"bench_scale", "bench_soak"}


def main(argv: list[str]) -> int:
    argv, options = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py")
                           if p.stem not in BY_NAME_ONLY)
    print(f"machine: {machine()}", flush=True)
    failed = 0
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            known = ", ".join(p.stem[6:] for p in HERE.glob("bench_*.py"))
            print(f"no benchmark {name!r} (have: {known})")
            return 2
        print(f"\n== {name} ==", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *options], cwd=HERE.parent)
        print(f"({name}: {time.monotonic() - started:.1f} s, exit {code})", flush=True)
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
