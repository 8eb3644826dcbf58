"""A soak run against a live `routelens serve` (shared by tests/test_soak.py and
benchmarks/bench_server.py): mixed requests over many distinct prompts, the server's resident
memory read from /api/debug along the way."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from dataclasses import dataclass, field

WORDS = ("the river city north light stone market winter garden music paper letter forest "
         "window silver morning harbor bridge story mountain").split()


def prompt_of(n: int, words: int = 16) -> str:
    rng = random.Random(n)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def call(url: str, body: dict | None = None, timeout: float = 300) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if r.headers.get_content_type() == "application/json" else {"bytes": len(raw)}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@dataclass
class SoakResult:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (requests so far, resident MiB)

    def rss_after(self, n: int) -> float:
        return next(mb for k, mb in self.rss_mb if k >= n)


def soak(base: str, total: int = 300, prompts: int = 50, seed: int = 0, every: int = 25) -> SoakResult:
    """`total` requests: traces of `prompts` distinct prompts (in a shuffled cycle), each followed
    by a mix of graph, node, edge, head, ffn and export requests on a recent trace."""
    rng = random.Random(seed)
    order = list(range(prompts))
    rng.shuffle(order)
    out = SoakResult()
    recent: list[dict] = []
    k = 0
    while out.requests < total:
        if not recent or out.requests % 4 == 0:
            status, body = call(base + "/api/trace", {"prompt": prompt_of(order[k % prompts])})
            k += 1
            if status == 200:
                recent = (recent + [body])[-4:]
        else:
            t = rng.choice(recent)
            tid, n, layers = t["trace_id"], len(t["tokens"]), t["n_layers"]
            pos, layer = rng.randrange(n), rng.randrange(layers)
            path = rng.choice([
                f"graph?threshold={rng.choice([0.01, 0.04, 0.1])}",
                f"node?kind=block&layer={layer}&pos={pos}",
                f"edge?layer={layer}&source={rng.randrange(pos + 1)}&target={pos}",
                f"head?layer={layer}&head={rng.randrange(-1, 3)}&pos={pos}",
                f"ffn?layer={layer}&pos={pos}&k=10",
                "export?format=svg&threshold=0.04",
            ])
            status, _ = call(f"{base}/api/trace/{tid}/{path}")
        out.requests += 1
        out.statuses[status] = out.statuses.get(status, 0) + 1
        if out.requests % every == 0:
            out.rss_mb.append((out.requests, call(base + "/api/debug")[1]["resident_mb"]))
    return out
