"""The server under load, against live `routelens serve` processes on smollm2-135m-instruct:

- 16 clients tracing 16 different prompts at once, against the same 16 run one after another
  (wall time of each, and whether every result is identical);
- a full queue: 12 clients at once on a server with `max_queue` 2: how many got 429, the
  Retry-After they were given, and whether each of them succeeded when it came back;
- a soak: 300 mixed requests over 50 distinct prompts, resident memory after the first 50 and at
  the end (target: within 15%).

    python benchmarks/bench_server.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import running_server  # noqa: E402
from soak import call, prompt_of, soak  # noqa: E402


def config_file(folder: str, **settings) -> str:
    path = Path(folder) / f"config-{len(settings)}-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"debug": True, **settings}))
    return str(path)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        with running_server("--no-store", "--config", config_file(folder, max_queue=16)) as base:
            prompts = [prompt_of(1000 + n) for n in range(16)]
            start = time.perf_counter()
            sequential = [call(base + "/api/trace", {"prompt": p, "norm": "l2"})[1]["predictions"] for p in prompts]
            seq_s = time.perf_counter() - start
        with running_server("--no-store", "--config", config_file(folder, max_queue=16)) as base:
            start = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                concurrent = list(pool.map(lambda p: call(base + "/api/trace", {"prompt": p, "norm": "l2"}), prompts))
            conc_s = time.perf_counter() - start
        same = [body["predictions"] for _, body in concurrent] == sequential
        print(f"16 clients, 16 prompts: sequential {seq_s:.1f} s, all at once {conc_s:.1f} s; "
              f"statuses {sorted({s for s, _ in concurrent})}; results identical to sequential: {same}")

        with running_server("--no-store", "--config", config_file(folder, max_queue=2)) as base:
            with ThreadPoolExecutor(12) as pool:
                first = list(pool.map(lambda n: (n, *call(base + "/api/trace", {"prompt": prompt_of(2000 + n, 60)})), range(12)))
            busy = [n for n, status, _ in first if status == 429]
            later = [call(base + "/api/trace", {"prompt": prompt_of(2000 + n, 60)})[0] for n in busy]
            retry = [body["error"]["message"] for _, status, body in first if status == 429][:1]
        print(f"full queue (max_queue 2, 12 clients at once): {12 - len(busy)} served, {len(busy)} answered 429 "
              f"({retry[0] if retry else '-'}); coming back later: {later.count(200)}/{len(later)} succeeded")

        with running_server("--config", config_file(folder, max_trace_cache_mb=96)) as base:
            result = soak(base, total=300, prompts=50)
        after_50, at_end = result.rss_after(50), result.rss_mb[-1][1]
        print(f"soak, 300 mixed requests over 50 prompts: statuses {result.statuses}; resident memory after 50 requests "
              f"{after_50:.0f} MiB, at the end {at_end:.0f} MiB ({(at_end / after_50 - 1) * 100:+.1f}%, target within 15%)")
        print("resident memory every 25 requests (MiB): " + ", ".join(f"{mb:.0f}" for _, mb in result.rss_mb))


if __name__ == "__main__":
    main()
