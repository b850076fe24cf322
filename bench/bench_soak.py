"""Kill -9 soak: acknowledged webhook events lost while the bridge is killed over and over.

A real ``room-display run`` bridge (webhook intake with an Encrypt Key, MQTT to a real Mosquitto
on loopback) gets signed deliveries at ``--rate`` a second from ``--senders`` connections:
bookings created, moved and cancelled in ``--rooms`` rooms. A delivery that gets no 200 is sent
again with its ``uuid`` (Feishu's retries, compressed: 0.5 s doubling to 4 s, never given up);
with one new delivery in twenty an answered one is sent again (at-least-once). After
``--kill-min``..``--kill-max`` seconds up (at random) the bridge's whole process group is
SIGKILLed and started again at once (as the unit's ``Restart=on-failure`` does, without its
``RestartSec``), for ``--duration`` seconds (or ``--kills`` kills); then every delivery is
answered, the bridge is killed once more and restarted, and every answered delivery must be in
effect: in the bridge's store and in a panel agent's started only then (it sees only the
retained room topics). How it works: ``display/testing/soak.py``.

Prints kills, deliveries, retries, acknowledged-but-lost (must be 0), restart -> ready times,
request latency and the load average; exits 1 if anything acknowledged was lost (or a delivery
was never answered, or a booking is wrong).

Run: ``scripts/bench soak`` (only by name; ``scripts/bench soak -- --kills 30``) or
``.venv/bin/python bench/bench_soak.py [--duration 90] [--rate 50] [--kills N]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, median, percentile  # noqa: E402
from display.testing.broker import mosquitto_binary  # noqa: E402
from display.testing.soak import Soak, SoakPlan, SoakReport  # noqa: E402


def plan_from(argv: list[str]) -> SoakPlan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90.0,
                        help="seconds of sending and killing (default 90)")
    parser.add_argument("--kills", type=int, default=0,
                        help="instead of --duration: this many kills (the last one included)")
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries a second (50)")
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--senders", type=int, default=3, help="connections at once (3)")
    parser.add_argument("--kill-min", type=float, default=4.0, help="seconds up, at least (4)")
    parser.add_argument("--kill-max", type=float, default=12.0, help="seconds up, at most (12)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0 < args.kill_min <= args.kill_max or args.rate <= 0 or args.rooms < 1 \
            or args.senders < 1:
        parser.error("need 0 < --kill-min <= --kill-max, --rate > 0, --rooms and --senders >= 1")
    return SoakPlan(duration=args.duration, kills=max(0, args.kills), rate=args.rate,
                    rooms=args.rooms, kill_after=(args.kill_min, args.kill_max),
                    senders=args.senders, seed=args.seed)


def summary(report: SoakReport) -> list[str]:
    """The figures, one per line."""
    lines = [
        f"kills (SIGKILL of the whole process group, restarted at once): {report.kills} "
        f"in {report.seconds:.0f} s",
        f"deliveries: {report.sent:,} sent, {report.acked:,} answered 200; "
        f"{report.posts:,} requests, of which {report.retries:,} retries "
        f"({report.retried:,} deliveries retried, {report.answer_lost:,} of them committed "
        f"before a kill whose 200 never arrived) and {report.again:,} answered ones sent again",
        f"acknowledged but lost: {len(report.lost)}"
        + (f"; never answered: {len(report.unanswered)}" if report.unanswered else "")
        + (f"; wrong bookings: {len(report.wrong)}" if report.wrong else ""),
    ]
    if report.ready:
        lines.append(
            f"restart -> bridge online on the broker: median {median(report.online_ready):.2f} "
            f"s, max {max(report.online_ready):.2f} s; -> webhook answering: median "
            f"{median(report.webhook_ready):.2f} s, max {max(report.webhook_ready):.2f} s; "
            f"-> both (ready): median {median(report.ready):.2f} s, max {max(report.ready):.2f} s")
    if report.latencies:
        lines.append(
            f"request -> 200: median {median(report.latencies):.1f} ms, "
            f"p99 {percentile(report.latencies, 99):.1f} ms, max {max(report.latencies):.0f} ms")
    if report.eventual:
        lines.append(
            f"first try -> 200 of the retried deliveries: median {median(report.eventual):.0f} "
            f"ms, max {max(report.eventual):.0f} ms")
    failures = ", ".join(f"{n} {what}" for what, n in sorted(report.failures.items()))
    verdicts = ", ".join(f"{n} {what}" for what, n in sorted(report.verdicts.items()))
    lines += [f"no 200: {failures or 'none'}; answers: {verdicts}",
              f"tracebacks in the bridge's and agent's logs: {report.tracebacks}",
              "load average (1, 5, 15 min) before: "
              + " ".join(f"{x:.2f}" for x in report.load_before)
              + "; after: " + " ".join(f"{x:.2f}" for x in report.load_after)]
    for line in (*report.lost, *report.unanswered, *report.wrong)[:20]:
        lines.append(f"  {line}")
    return lines


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    plan = plan_from(argv)
    if mosquitto_binary() is None:
        print("no mosquitto binary: apt-get install mosquitto (scripts/bootstrap does it as root)")
        return 1
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="room-display-soak-") as tmp:
        try:
            report = Soak(Path(tmp), plan, lambda line: print(line, flush=True)).run()
        except AssertionError as exc:  # the bridge did not come back, or died on its own
            print(f"soak stopped: {exc}")
            return 1
    for line in summary(report):
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
