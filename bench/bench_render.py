"""Render + encode time of the e-ink sign for each panel size (README "Performance").

Run: ``.venv/bin/python bench/bench_render.py [--runs N]``. Prints the machine, then per size and
palette the median and p95 of rendering a zh+en sign (the four states in turn) and packing its
bit planes, after a warm-up render (font files loaded, as in a running node); both "cold" (no
text measurement reused) and "warm" (the renderer's measurement cache hot).
Target: <= 50 ms for 800x480.

Then the peak RSS of a fresh process that renders an 800x480 b/w/r sign eight times (the four
states in zh and in en), as an e-ink agent with one such sign does, and how many font-file
mappings it holds afterwards (target <= 36 MB; Pillow maps a font file once per loaded size).
``--tree DIR`` runs that process on another checkout (e.g. the code before a change).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, median, percentile
from display.config import DeviceConfig, DeviceKind, DeviceProtocol
from display.encode.planes import planes_bytes
from display.model import State
from display.outputs import Palette
from display.render.eink import render_sign
from display.render.fonts import Fonts
from display.render.samples import sample_view

SIZES = [(250, 122), (296, 128), (400, 300), (800, 480)]

#: Run in a fresh interpreter (cwd: the tree measured): eight renders, then VmHWM and mappings.
_AGENT = """
import json
from display.config import DeviceConfig, DeviceKind, DeviceProtocol
from display.encode.planes import planes_bytes
from display.model import State
from display.outputs import Palette
from display.render.eink import render_sign
from display.render.samples import sample_view
device = DeviceConfig(id="agent", kind="eink", url="virtual:x", protocol="panel",
                      size=(800, 480), palette=Palette.BWR)
for language in ("zh", "en"):
    for state in State:
        planes_bytes(render_sign(sample_view(state, language=language), device))
with open("/proc/self/status") as f:
    kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
with open("/proc/self/maps") as f:
    fonts = sum(1 for line in f if line.rstrip().endswith((".ttf", ".ttc", ".otf")))
print(json.dumps([kb / 1024, fonts]))
"""


def bench(size: tuple[int, int], palette: Palette, runs: int, cold: bool) -> list[float]:
    """Milliseconds per render + encode, over ``runs`` renders cycling through the four states.

    ``cold``: a fresh :class:`Fonts` per render, so no text measurement is reused (font files
    stay loaded, as in any running node); otherwise the renderer's caches are warm, as when a
    node redraws a room whose name and bookings it has drawn before.
    """
    device = DeviceConfig(id="bench", kind=DeviceKind.EINK, url="virtual:x",
                          protocol=DeviceProtocol.PANEL, size=size,
                          palette=palette)
    views = [sample_view(s, language="zh+en") for s in State]
    for v in views:  # warm-up: every font size used gets loaded once
        planes_bytes(render_sign(v, device))
    out = []
    for i in range(runs):
        fonts = Fonts() if cold else None
        t0 = time.perf_counter()
        planes_bytes(render_sign(views[i % len(views)], device, fonts=fonts))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def agent_rss(tree: Path, runs: int) -> tuple[list[float], list[float]]:
    """Peak RSS (MB) and font-file mappings of ``runs`` fresh processes rendering 8 signs."""
    rss, maps = [], []
    env = dict(os.environ, PYTHONPATH=str(tree))
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _AGENT], check=True, capture_output=True,
                             text=True, cwd=tree, env=env).stdout
        r, m = json.loads(out)
        rss.append(r)
        maps.append(m)
    return rss, maps


def _stats(ms: list[float]) -> str:
    return f"{median(ms):>8.1f} {percentile(ms, 95):>7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="checkout whose renderer the RSS process runs")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rss, maps = agent_rss(args.tree, 3)
    print(f"800x480 bwr sign, 8 renders in a fresh process (median of 3): peak RSS "
          f"{median(rss):.1f} MB (target <= 36 MB), {median(maps):.0f} font-file mappings")
    print(f"{'':>17} {'cold (ms)':^16} {'warm (ms)':^16}")
    print(f"{'size':>9} {'palette':>7} {'median':>8} {'p95':>7} {'median':>8} {'p95':>7}")
    for size in SIZES:
        for palette in (Palette.BW, Palette.BWR):
            cold = _stats(bench(size, palette, args.runs, cold=True))
            warm = _stats(bench(size, palette, args.runs, cold=False))
            print(f"{size[0]:>4}x{size[1]:<4} {palette.value:>7} {cold} {warm}")


if __name__ == "__main__":
    main()
