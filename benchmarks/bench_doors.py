"""The server's defaults under the load of issue 9's review, against live `routelens serve`
processes on smollm2-135m-instruct, default limits (only `debug` on, to read resident memory):

- a 2,000-token prompt: the answer, its time, and resident memory before and after;
- /api/health latency while 32 clients trace at once, and while a threshold-0 graph of a
  256-token trace is requested (default `max_graph_edges`);
- 1,100 slow connections (headers that never end): health latency while they are open, how many
  the server closed by itself, and how much log they wrote.

    python benchmarks/bench_doors.py
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import running_server  # noqa: E402
from soak import prompt_of  # noqa: E402


def call(url: str, body: dict | None = None, timeout: float = 600) -> tuple[int, dict, float]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), time.perf_counter() - start
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), time.perf_counter() - start


class HealthProbe:
    """Calls /api/health every 50 ms in a thread and keeps the latencies."""

    def __init__(self, base: str) -> None:
        self.base, self.ms, self.failed = base, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, _, secs = call(self.base + "/api/health", timeout=30)
                if status == 200:
                    self.ms.append(secs * 1000)
                else:
                    self.failed += 1
            except (OSError, ValueError):  # refused, reset, or an answer that is not JSON
                self.failed += 1
            self._stop.wait(0.05)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.ms:
            return f"no answer ({self.failed} failed)"
        q = statistics.quantiles(self.ms, n=20) if len(self.ms) > 1 else self.ms * 19
        return f"health p50 {statistics.median(self.ms):.0f} ms, p95 {q[18]:.0f} ms, max {max(self.ms):.0f} ms over {len(self.ms)} calls, {self.failed} failed"


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))  # 1,100 sockets here, and in the server
    with tempfile.TemporaryDirectory() as folder:
        cfg = Path(folder) / "config.json"
        cfg.write_text(json.dumps({"debug": True}))
        with running_server("--no-store", "--config", str(cfg)) as base:
            limit = call(base + "/api/debug")[1]
            rss0 = limit["resident_mb"]
            long = "".join(str(i * 7 % 10) for i in range(2000))  # 2,000 tokens (one a digit)
            status, body, secs = call(base + "/api/trace", {"prompt": long})
            rss1 = call(base + "/api/debug")[1]["resident_mb"]
            print(f"2,000-token prompt, default limits: {status} {body.get('error', {}).get('code', '')} in {secs * 1000:.0f} ms; "
                  f"resident memory {rss0:.0f} -> {rss1:.0f} MiB ({rss1 - rss0:+.0f} MiB)")
            print(f"   {body.get('error', {}).get('message', '')}")

            prompts = [prompt_of(3000 + n, 60) for n in range(32)]
            with HealthProbe(base) as probe, ThreadPoolExecutor(32) as pool:
                statuses = [s for s, _, _ in pool.map(lambda p: call(base + "/api/trace", {"prompt": p}), prompts)]
            print(f"32 clients tracing at once: statuses {sorted(set(statuses))} ({statuses.count(429)} x 429); {probe.summary()}")

            words = prompt_of(4000, 256)
            status, body, _ = call(base + "/api/trace", {"prompt": words})
            tid, n = body["trace_id"], len(body["tokens"])
            with HealthProbe(base) as probe:
                status, graph, secs = call(f"{base}/api/trace/{tid}/graph?threshold=0&target=-1")
            got = f"{len(graph['edges'])} edges" if status == 200 else graph["error"]["code"]
            print(f"threshold-0 graph of {n} tokens: {status} {got} in {secs:.1f} s; {probe.summary()}")

        log = Path(os.environ.get("TMPDIR", "/tmp"))
        with running_server("--no-store", "--config", str(cfg)) as base:
            port = int(base.rsplit(":", 1)[1])
            logs = sorted(log.glob(f"routelens-serve-{port}.log"))
            slow: list[socket.socket] = []
            start = time.perf_counter()
            with HealthProbe(base) as probe:
                for _ in range(1100):
                    s = socket.create_connection(("127.0.0.1", port))
                    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-slow: ")
                    slow.append(s)
                closed = 0
                for s in slow:
                    s.settimeout(60)
                    try:
                        closed += s.recv(10) == b""
                    except OSError:
                        pass
            took = time.perf_counter() - start
            for s in slow:
                s.close()
            alive = call(base + "/api/health")[0]
            size = sum(p.stat().st_size for p in logs)
            print(f"1,100 slow connections: {closed} closed by the server within {took:.1f} s; {probe.summary()}; "
                  f"health afterwards {alive}; server log {size} bytes")


if __name__ == "__main__":
    main()
