"""Feishu intake child on its own: spawn to ready and peak RSS, re-sync on, both modes.

The child (``python -m display.intake.feishu -c CONFIG``, as the supervisor starts it) talks to
the local Feishu stand-in (``display/testing/feishu_standin.py``: tenant token, free/busy,
long-connection
endpoint and WebSocket), with ``resync = true`` and one room. Measured per run, 5 runs a mode:

- webhook: spawn -> the ``ready`` line (listening); peak RSS (VmHWM) once the first re-sync
  pass has reported;
- long connection: spawn -> the ``ready`` line (connected to the stand-in's WebSocket); peak
  RSS after the first re-sync report.

``--tree DIR`` runs the child from another checkout (e.g. an older commit, for "today's" figures).

Run: ``scripts/bench child`` or ``.venv/bin/python bench/bench_child.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, machine, median, peak_rss_mb
from display.testing.feishu_standin import FeishuStandIn, FreeBusyApi

CONFIG = """\
[node]
state_dir = {state}
timezone = "UTC"

[feishu]
mode = "{mode}"
app_id = "{app_id}"
app_secret = "{secret}"
domain = "{domain}"
listen = "127.0.0.1:{port}"
verification_token = "vtoken"
resync = true

[[rooms]]
open_id = "omm_bench"
"""


def one(tmp: Path, standin: FeishuStandIn, mode: str, tree: Path | None) -> tuple[float, float]:
    """Seconds from spawn to ``ready`` and the peak RSS (MB) after the first re-sync report."""
    config = tmp / "config.toml"
    config.write_text(CONFIG.format(state=json.dumps(str(tmp / "state")), mode=mode,
                                    app_id=standin.app_id, secret=standin.app_secret,
                                    domain=standin.domain, port=free_port()), encoding="utf-8")
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "display.intake.feishu", "-c", str(config)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=tree or tmp, env=env)
    assert proc.stdout is not None and proc.stdin is not None
    ready = None
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # blocking reads: each line is one protocol message
            msg = json.loads(line)
            if msg.get("ready") and ready is None:
                ready = time.perf_counter() - started
            if "resync" in msg:
                if not msg["resync"]["ok"]:
                    raise SystemExit(f"re-sync failed: {msg['resync']}")
                break
            if time.monotonic() > deadline:
                raise SystemExit("the child did not re-sync in 120 s")
        if ready is None:
            raise SystemExit(f"the child exited with {proc.wait()} before ready")
        return ready, peak_rss_mb(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=None, help="run the child from this checkout")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with FeishuStandIn() as standin, tempfile.TemporaryDirectory(prefix="bench-child-") as raw:
        FreeBusyApi(standin)  # tenant token + free/busy routes
        for mode, what in (("webhook", "listening"), ("long_connection", "connected")):
            times, rss = [], []
            for i in range(args.runs):
                directory = Path(raw) / f"{mode}{i}"
                directory.mkdir()
                t, r = one(directory, standin, mode, args.tree)
                times.append(t)
                rss.append(r)
            print(f"intake child, {mode}, re-sync on ({args.runs} runs): spawn -> ready "
                  f"({what}) median {median(times):.2f} s (max {max(times):.2f} s); peak RSS "
                  f"after the first re-sync median {median(rss):.1f} MB", flush=True)


if __name__ == "__main__":
    main()
