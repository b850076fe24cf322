"""Intake benchmark: events/s in-process and over the full webhook path; lark_oapi import cost.

    .venv/bin/python bench/bench_intake.py [--events 2000] [--runs 3] [--clients 2]

- in-process: ``EventSink.accept`` (parse + dedupe + durable SQLite commit) on fresh events;
- webhook: the real intake child (``IntakeSupervisor``) over HTTP/1.1 keep-alive from
  ``--clients`` threads, each body AES-encrypted and signed (decrypt + signature + commit); the
  requests are built ahead and sent over raw sockets so the client takes little of the CPU;
- import: ``import lark_oapi`` in a fresh interpreter: seconds and peak RSS.

Prints medians over ``--runs`` and the machine. Every event is fresh (no duplicates), so every
one is a real commit with fsync.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, median, percentile, python_cost, wait  # noqa: E402
from display.clock import SystemClock  # noqa: E402
from display.intake.sink import EventSink  # noqa: E402
from display.intake.supervisor import IntakeSupervisor  # noqa: E402
from display.store import ScheduleStore  # noqa: E402
from display.testing.envelopes import envelope  # noqa: E402
from display.testing.intake_support import Recorder, write_config  # noqa: E402

KEY = "bench-encrypt-key"
TOKEN = "vtoken"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


def events(n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` distinct bookings spread over 20 rooms."""
    out = []
    for i in range(n):
        start = START + timedelta(minutes=15 * (i % 96))
        out.append(envelope("created", uid=f"{tag}-{i}", start=start,
                            end=start + timedelta(minutes=30), rooms=(f"omm_{i % 20}",)))
    return out


def bench_in_process(n: int, where: Path = ROOT) -> tuple[float, float]:
    """Events/s through EventSink into a durable store under ``where``, and KiB the process
    wrote to storage per event (``/proc/self/io`` write_bytes: WAL frames and checkpoints)."""
    with tempfile.TemporaryDirectory(dir=where) as tmp, \
            ScheduleStore(Path(tmp) / "schedule.db") as store:
        sink = EventSink(store, SystemClock())
        batch = events(n, f"inproc{time.monotonic_ns()}")
        written = _write_bytes()
        t0 = time.perf_counter()
        for env in batch:
            sink.accept(env)
        rate = n / (time.perf_counter() - t0)
        return rate, (_write_bytes() - written) / n / 1024


def _write_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes:"))


def bench_webhook(n: int, clients: int, runs: int,
                  where: Path = ROOT) -> tuple[list[float], list[float]]:
    """Events/s per run and per-request latencies (ms) through the webhook child."""
    # Imported here, after the import benchmark: it pulls in lark_oapi (for the stand-in's
    # protobuf frames), and a big parent would inflate the children's peak RSS.
    from display.testing.feishu_standin import encrypted_body, signed_headers

    rates: list[float] = []
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        config = write_config(Path(tmp) / "config.toml", state_dir=Path(tmp) / "state", feishu={
            "mode": "webhook", "listen": "127.0.0.1:0", "verification_token": TOKEN,
            "encrypt_key": KEY, "resync": False})  # no app credentials here
        with IntakeSupervisor(config, Recorder()) as sup:
            listen = wait(lambda: sup.ready_listen, 120, "the webhook intake to be ready",
                          interval=0.05)
            for run in range(runs):
                requests = []
                for env in events(n, f"http{run}-{time.monotonic_ns()}"):
                    body = encrypted_body(env, KEY)
                    requests.append(_raw_request(body, signed_headers(body, KEY)))
                shares = [requests[i::clients] for i in range(clients)]
                errors: list[str] = []

                def post(share: list[bytes], errors: list[str]) -> None:
                    host, port = listen.rsplit(":", 1)
                    with socket.create_connection((host, int(port))) as sock, \
                            sock.makefile("rb") as replies:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        for request in share:
                            t = time.perf_counter()
                            sock.sendall(request)
                            status, reply = _read_reply(replies)
                            latencies.append((time.perf_counter() - t) * 1000)
                            if status != 200:
                                errors.append(f"{status} {reply!r}")

                threads = [threading.Thread(target=post, args=(s, errors)) for s in shares]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                rates.append(n / (time.perf_counter() - t0))
                if errors:
                    raise SystemExit(f"webhook answered errors, e.g. {errors[0]}")
    return rates, latencies


def _raw_request(body: bytes, headers: dict[str, str]) -> bytes:
    """A complete keep-alive POST, built ahead so the client costs little CPU: on a 2-core
    machine client and server share the cores, while Feishu's client runs elsewhere."""
    lines = ["POST /webhook/event HTTP/1.1", "Host: 127.0.0.1",
             f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_reply(replies: Any) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 answer with Content-Length."""
    status = int(replies.readline().split()[1])
    length = 0
    while (line := replies.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, replies.read(length)


def bench_import(runs: int) -> tuple[list[float], list[float], float]:
    """Seconds and peak RSS (MB) of ``import lark_oapi`` in a fresh interpreter, and the
    peak RSS of a bare interpreter for comparison."""
    secs, _walls, rss = python_cost("import lark_oapi", runs)
    bare = python_cost("pass", 1)[2][0]
    return secs, rss, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()

    print(f"machine: {machine()}")
    secs, rss, bare = bench_import(args.runs)
    places = [(ROOT, "disk")]
    if Path("/dev/shm").is_dir():  # tmpfs: fsync costs nothing, which isolates the CPU path
        places.append((Path("/dev/shm"), "tmpfs"))
    for where, label in places:
        inproc = [bench_in_process(args.events, where) for _ in range(args.runs)]
        print(f"in-process, store on {label} (parse + dedupe + commit with fsync): "
              f"{median([r for r, _ in inproc]):,.0f} events/s median of {args.runs} x "
              f"{args.events}; {median([b for _, b in inproc]):.1f} KiB written per event")
    for where, label in places:
        rates, lat = bench_webhook(args.events, args.clients, args.runs, where)
        print(f"webhook, store on {label} (HTTP keep-alive, {args.clients} clients, decrypt + "
              f"signature + commit): {median(rates):,.0f} events/s median of "
              f"{args.runs} x {args.events}; latency p50 {percentile(lat, 50):.2f} ms, "
              f"p99 {percentile(lat, 99):.2f} ms")
    print(f"import lark_oapi (fresh interpreter): {median(secs):.2f} s, "
          f"peak RSS {median(rss):.0f} MB (bare interpreter {bare:.0f} MB)")


if __name__ == "__main__":
    main()
