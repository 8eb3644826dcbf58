"""The HTTP API (docs/api.md) and the built front end, as one FastAPI app.

Longer than most modules on purpose: the endpoints are closures over one app's configuration,
model registry, trace cache and work queue, each a few lines that validate and hand the work to
the library; the rules they share (origins, access, limits, queue) live in their own modules.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, TypeVar

import anyio

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    DownloadError,
    EmptyPromptError,
    InvalidArgumentError,
    ModelNotFoundError,
    NonFiniteError,
    PromptTooLongError,
    RoutelensError,
    TooLargeError,
    UnknownModelError,
    UnsupportedArchitectureError,
)
from ..interrupt import Interrupted
from ..routes import kernels
from ..errors import ForbiddenError
from ..models.loading import resolve_device
from .access import AccessMiddleware
from .config import ServerConfig, read_prompt_file
from .limits import BodyLimitMiddleware
from .origins import HostPolicy, OriginMiddleware
from .params import ContrastQuery, graph_target, json_bytes
from .why import Endpoints, add_why_endpoints
from .analysis import UnknownAnalysisError, add_analysis_endpoints
from .state import ModelRegistry, ModelSlot, TraceCache, TraceEntry, UnknownTraceError
from ..trace.generation import MAX_NEW_TOKENS
from ..trace.estimate import Estimate, PeakMemory, estimate, is_calibrated
from .work import MemoryBudgetError, OutOfMemoryError, QueueFullError, WorkQueue, compute, device_key

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_THRESHOLD = 0.04  # the route the page draws first
FIRST_ROUTE_BYTES = 512 * 2**20  # of the forward pass's layers a trace keeps for its first route

ERROR_STATUS: list[tuple[type[RoutelensError], int, str]] = [
    (ForbiddenError, 403, "forbidden"),
    (UnknownTraceError, 404, "unknown_trace"),
    (UnknownAnalysisError, 404, "unknown_analysis"),
    (UnknownModelError, 404, "unknown_model"),
    (ModelNotFoundError, 404, "model_not_found"),
    (UnsupportedArchitectureError, 422, "unsupported_architecture"),
    (NonFiniteError, 422, "non_finite"),
    (EmptyPromptError, 422, "empty_prompt"),
    (PromptTooLongError, 413, "prompt_too_long"),
    (InvalidArgumentError, 422, "invalid_argument"),
    (DownloadError, 502, "download_failed"),
    (QueueFullError, 429, "busy"),
    (MemoryBudgetError, 413, "too_large"),
    (TooLargeError, 413, "too_large"),
    (OutOfMemoryError, 503, "out_of_memory"),
]


def _resident_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _unicode(value: str) -> str:
    """Refuse strings that are not text: a lone surrogate (JSON can send "\\ud800") cannot be encoded."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not Unicode text (it holds a lone surrogate such as \\ud800); send UTF-8 text") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Text


class TraceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Text | None = None
    prompt: Text
    chat: bool = False
    norm: Literal["l1", "l2"] = "l1"
    # generate this many tokens after the prompt and trace prompt and continuation (trace/generation.py)
    generate: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, strict=True)  # not `true`
    sample: bool = False
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    temperature: float = Field(1.0, gt=0, le=10)

    def generation_key(self) -> str:
        if self.generate is None:
            return ""
        how = f"sample{self.seed}/{self.temperature:g}" if self.sample else "greedy"
        return f"\x00generate{self.generate}\x00{how}"


def create_app(config: ServerConfig, *, preload: bool = True,
               report: Callable[[ModelSlot], None] | None = None) -> FastAPI:
    """The app for `config`; `preload` starts loading the default model (and compiling the L1
    kernel) at once; `report` is told each stage of every model load (see ModelRegistry)."""
    app = FastAPI(title="routelens", docs_url="/api/docs", openapi_url="/api/openapi.json")
    if config.access_token:
        app.add_middleware(AccessMiddleware, token=config.access_token, max_wrong=config.max_wrong_tokens_per_minute)
    # outside the token check, so a login's body is bounded in size and time like every other body
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes, timeout=config.body_timeout_s)
    # added last, so the outermost check: which hosts and origins may talk to the server at all
    app.add_middleware(OriginMiddleware, policy=HostPolicy(config.bind_host, config.allowed_hosts, config.allowed_origins))
    traces = TraceCache(config.max_traces, config.max_trace_cache_mb * 2**20)
    registry = ModelRegistry(config, on_evict=traces.drop_model, report=report)
    queue = WorkQueue(config.max_queue, config.request_time_limit)
    max_response = int(config.max_response_mb * 2**20)
    app.state.config, app.state.registry, app.state.traces, app.state.queue = config, registry, traces, queue

    R = TypeVar("R")

    async def on_model(request: Request, slot: ModelSlot, fn: Callable[[], R]) -> R:
        """Run model work through the device's queue (one at a time), cancelled if the client leaves."""
        return await compute(request, queue, slot.device, fn)

    async def ready(request: Request, name: str) -> ModelSlot:
        """The loaded model `name`, loading it first. The wait holds no thread and counts as a
        place in the device's queue (429 when full); it ends at the time limit or when the client leaves."""
        slot = registry.start(name)
        if not slot.done.is_set():
            deadline = time.monotonic() + config.request_time_limit
            with queue.waiting(device_key(resolve_device(None))):
                while not slot.done.is_set():
                    if time.monotonic() > deadline:
                        raise Interrupted(f"{name!r} did not finish loading within {config.request_time_limit:g} s; "
                                          "try again when its status says ready", timed_out=True)
                    if await request.is_disconnected():
                        raise Interrupted("the client closed the connection", timed_out=False)
                    await anyio.sleep(0.05)
        if slot.error is not None:
            raise slot.error
        return slot

    def edge_bound(*limits: int) -> int:
        return min([config.max_graph_edges, *limits])

    @app.exception_handler(RoutelensError)
    async def routelens_error(_request: Request, err: RoutelensError) -> JSONResponse:
        if isinstance(err, QueueFullError):
            response = error_response(429, "busy", str(err))
            response.headers["retry-after"] = str(err.retry_after)
            return response
        if isinstance(err, Interrupted):  # 499: the client left (nobody reads it); 503: over the time limit
            return error_response(503 if err.timed_out else 499, "time_limit" if err.timed_out else "client_closed", str(err))
        for cls, status, code in ERROR_STATUS:
            if isinstance(err, cls):
                return error_response(status, code, str(err))
        return error_response(400, "bad_request", str(err))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(400, "bad_request", "the request body is not valid JSON; send a JSON object")
        parts = []
        for p in problems[:3]:
            where = ".".join(str(x) for x in p.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{where or 'request'}: {p.get('msg', 'invalid')}")
        return error_response(422, "invalid_argument", "; ".join(parts) + " (see /api/docs)")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        message = f"{err.detail}: {request.method} {request.url.path} (the API is listed at /api/docs)"
        return error_response(err.status_code, code, message)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, err: Exception) -> JSONResponse:
        return error_response(500, "internal_error", f"{type(err).__name__}: {err}; the server keeps running")

    # ---- models ---------------------------------------------------------------------------
    @app.get("/api/config")
    def get_config() -> dict[str, Any]:
        return {
            "demo_mode": config.demo_mode,
            "debug": config.debug,
            "default_model": config.default_model,
            "models": config.model_names(),
            "allow_custom_models": config.custom_models_allowed,
            "allow_loading_dataset_files": config.dataset_files_allowed,
            "max_user_string_length": config.max_user_string_length,
            "prompts": config.prompts(),
            "default_threshold": DEFAULT_THRESHOLD,
            "min_threshold": min_threshold(),  # below it: 403
            "max_generate_tokens": config.max_generate_tokens,  # POST /api/trace `generate` above it: 403
        }

    @app.post("/api/models/load")
    def load_model(body: LoadRequest) -> JSONResponse:
        slot = registry.start(body.model.strip())
        status = slot.status()
        return JSONResponse(status_code=200 if slot.state == "ready" else 202, content=status)

    @app.get("/api/models/status")
    def model_status(model: str = Query(..., min_length=1)) -> dict[str, Any]:
        return registry.status(model)

    # ---- traces -----------------------------------------------------------------------------
    @app.post("/api/trace")
    async def make_trace(request: Request, body: TraceRequest) -> dict[str, Any]:
        name = (body.model or config.default_model).strip()
        if not body.prompt.strip():
            raise EmptyPromptError("the prompt is empty: type some text to trace")
        if len(body.prompt) > config.max_user_string_length:
            raise PromptTooLongError(
                f"the prompt has {len(body.prompt)} characters; this server accepts at most {config.max_user_string_length}"
            )
        norm = 1 if body.norm == "l1" else 2
        if body.generate is None and (body.sample or body.seed is not None or body.temperature != 1.0):
            raise InvalidArgumentError("sample, seed and temperature belong to a generation; give generate "
                                       "(the number of tokens to generate) too, or leave them out")
        if body.generate is not None and body.generate > config.max_generate_tokens:
            raise ForbiddenError(f"this server generates at most {config.max_generate_tokens} tokens a request "
                                 "(max_generate_tokens): ask for fewer")
        trace_id = TraceCache.key(name, body.prompt, body.chat, norm, body.generation_key())
        entry = traces.find(trace_id)
        start = time.perf_counter()
        cached = entry is not None
        if entry is None:
            slot = await ready(request, name)
            model = slot.model
            ids = model.tokenize(body.prompt, chat=body.chat)
            extra = body.generate or 0  # a generation traces prompt and continuation together
            if len(ids) + extra > config.prompt_token_limit:
                more = f" and {extra} generated" if extra else ""
                raise PromptTooLongError(
                    f"the prompt has {len(ids)} tokens{more}; this server traces at most {config.prompt_token_limit}: "
                    f"shorten it{' or generate fewer' if extra else ''}")
            est = await estimate_on(request, slot, len(ids) + extra)
            check_estimate(est, name)
            keep = first_route_bytes(est)
            est = estimate(model.adapter, len(ids) + extra, keep_layers_bytes=keep)  # measured now: no work

            def run() -> tuple[Any, list, int | None, dict | None]:
                with PeakMemory(next(model.hf_model.parameters()).device) as peak:
                    store = None if config.store else False
                    generation = None
                    if body.generate is not None:
                        gen = model.generate(ids.tolist(), body.generate, sample=body.sample, seed=body.seed,
                                             temperature=body.temperature, norm=norm, store=store)
                        trace, generation = gen.trace, gen.to_dict()
                    else:
                        trace = model.trace(ids.tolist(), norm=norm, store=store, keep_layers_bytes=keep)
                    predictions = trace.predictions(k=5)
                    # a generation: every step's route at once (one pass), so stepping through them is instant
                    warm_first_route(trace, [s["pos"] for s in generation["steps"]] if generation else -1)
                return trace, predictions, peak.peak_bytes, generation

            trace, predictions, peak_bytes, generation = await on_model(request, slot, run)
            measured = {"peak_bytes": peak_bytes, "forward_seconds": round(trace.capture.forward_seconds, 4),
                        "kept_bytes": trace.capture.kept_bytes()}
            entry = TraceEntry(trace_id=trace_id, slot=slot, trace=trace, predictions=predictions,
                               nbytes=est.kept_bytes,  # what the cache holds, not the peak
                               estimate=est.to_dict(), measured=measured, generation=generation)
            traces.put(entry)
        trace = entry.trace
        timings = {
            "forward": round(trace.capture.forward_seconds, 4),
            "total": round(time.perf_counter() - start, 4),
            "cached": cached,
            "stored": bool(trace.capture.extra.get("stored")),  # read back from the persistent store
        }
        return {
            "trace_id": trace_id,
            "model": name,
            "facts": entry.slot.model.facts(),
            "tokens": trace.tokens,  # labels: "<E6 97>" for a piece of a character (models/tokens.py)
            "token_bytes": trace.token_bytes,  # each token's bytes as hex ("e697")
            "token_ids": trace.token_ids,
            "n_layers": trace.n_layers,
            "n_heads": trace.adapter.n_heads,
            "parallel": any(trace.is_parallel(layer) for layer in range(trace.n_layers)),
            "predictions": entry.predictions,
            "timings": timings,
            "estimate": entry.estimate,  # trace/estimate.py, before it ran
            "measured": entry.measured,  # the same figures, measured while it ran
            "generation": entry.generation,  # null, or the generated steps: {prompt_length, steps, ...}
        }

    def first_route_bytes(est: Estimate) -> int:
        """How much of the forward pass's layers a trace keeps for its first route: what the
        per-trace budget leaves, at most FIRST_ROUTE_BYTES."""
        if config.max_trace_memory_mb is None:
            return FIRST_ROUTE_BYTES
        return int(max(0, min(FIRST_ROUTE_BYTES, config.max_trace_memory_mb * 2**20 - est.peak_bytes)))

    def warm_first_route(trace: Any, target: int | list[int] = -1) -> None:
        """The route the page asks for first (the last position, or a generation's last step, at the
        default threshold), built while the forward pass's layers are still at hand; the page's
        request then finds its rows."""
        try:
            trace.graph(target=target, threshold=max(DEFAULT_THRESHOLD, min_threshold()), max_edges=edge_bound())
        except TooLargeError:
            pass  # the page's own request will say so
        finally:
            trace.capture.layers.drop_seeds()

    def min_threshold() -> float:
        return config.demo_min_threshold if config.demo_mode else 0.0

    async def estimate_on(request: Request, slot: ModelSlot, n_tokens: int) -> Estimate:
        """The estimate; when the model's speed is not measured yet (the load measures it), that
        runs a few of its blocks: in the device's queue, never on the event loop."""
        if is_calibrated(slot.model.adapter):
            return estimate(slot.model.adapter, n_tokens)
        return await on_model(request, slot, lambda: estimate(slot.model.adapter, n_tokens))

    def check_estimate(est: Estimate, name: str) -> None:
        """Refuse (413) a trace the per-trace memory budget cannot hold, before it runs."""
        if config.max_trace_memory_mb is not None and est.peak_bytes > config.max_trace_memory_mb * 2**20:
            raise MemoryBudgetError(
                f"a trace of {est.n_tokens} tokens on {name} needs about {est.peak_bytes / 2**20:.0f} MiB; this server "
                f"allows {config.max_trace_memory_mb:g} MiB per trace (max_trace_memory_mb): shorten the prompt")

    @app.post("/api/estimate")
    async def estimate_trace(request: Request, body: TraceRequest) -> dict[str, Any]:
        """What a trace of this prompt would cost (memory, time), and whether this server allows it."""
        name = (body.model or config.default_model).strip()
        if len(body.prompt) > config.max_user_string_length:
            raise PromptTooLongError(
                f"the prompt has {len(body.prompt)} characters; this server accepts at most {config.max_user_string_length}")
        slot = await ready(request, name)
        ids = slot.model.tokenize(body.prompt, chat=body.chat)
        est = await estimate_on(request, slot, len(ids))
        est = estimate(slot.model.adapter, len(ids), keep_layers_bytes=first_route_bytes(est))  # as /api/trace runs it
        why = None
        if len(ids) > config.prompt_token_limit:
            why = f"the prompt has {len(ids)} tokens; this server traces at most {config.prompt_token_limit}"
        elif config.max_trace_memory_mb is not None and est.peak_bytes > config.max_trace_memory_mb * 2**20:
            why = (f"it needs about {est.peak_bytes / 2**20:.0f} MiB; this server allows {config.max_trace_memory_mb:g} "
                   "MiB per trace (max_trace_memory_mb)")
        limit = config.max_trace_memory_mb
        return {
            "model": name,
            "n_tokens": len(ids),
            "estimate": est.to_dict(),
            "limits": {"max_trace_memory_bytes": int(limit * 2**20) if limit is not None else None,
                       "prompt_token_limit": config.prompt_token_limit},
            "fits": why is None,
            "why": why,
        }

    def use(trace_id: str) -> TraceEntry:
        return traces.get(trace_id)

    def check_threshold(threshold: float) -> None:
        if config.demo_mode and threshold < config.demo_min_threshold:
            raise ForbiddenError(f"this demo draws routes at thresholds of {config.demo_min_threshold:g} and above; "
                                 "raise the threshold")

    @app.get("/api/prompts")
    def dataset_prompts(file: str = Query(..., min_length=1, max_length=500)) -> dict[str, Any]:
        """The prompts of a dataset file (one per line) from the configured dataset folder."""
        return {"file": file, "prompts": read_prompt_file(config.dataset_path(file))}

    @app.get("/api/trace/{trace_id}/graph")
    async def graph(request: Request, trace_id: str, target: str = Query("-1", max_length=12),
                    threshold: float = Query(0.04, ge=0.0, le=1.0),
                    contrast: ContrastQuery = Depends()) -> Response:
        """The route to one position (an integer, negative from the end) or to every position
        (`target=all`: the union of each position's route, docs/api.md); with a foil, the
        contrastive route (docs/contrastive.md)."""
        entry = use(trace_id)
        check_threshold(threshold)
        target = graph_target(target)

        def work() -> bytes:
            built = entry.trace.graph(target=target, threshold=threshold, max_edges=edge_bound(), **contrast.kwargs())
            return json_bytes(built.to_dict())

        return Response(content=await on_model(request, entry.slot, work), media_type="application/json")

    @app.get("/api/trace/{trace_id}/export")
    async def export(
        request: Request,
        trace_id: str,
        format: Literal["json", "graphml", "svg", "png", "html"] = "json",  # noqa: A002 (the query parameter's name)
        target: str = Query("-1", max_length=12),
        threshold: float = Query(0.04, ge=0.0, le=1.0),
        contrast: ContrastQuery = Depends(),
    ) -> Response:
        """The route graph as a file: the same formats as `routelens trace --out`."""
        from ..export.files import MEDIA_TYPES, render

        entry = use(trace_id)
        check_threshold(threshold)
        target = graph_target(target)
        bound = edge_bound(config.max_export_edges)

        def work() -> tuple[Any, bytes]:  # building and rendering: both heavy, both in the queue
            built = entry.trace.graph(target=target, threshold=threshold, max_edges=bound, **contrast.kwargs())
            return built, render(built, format)

        graph, data = await on_model(request, entry.slot, work)
        pos = graph.target.get("pos")
        vs = f"-vs{graph.target['foil_id']}" if graph.target.get("foil_id") is not None else ""
        name = f"routelens-{trace_id}-{'all' if pos is None else pos}{vs}-{threshold:g}.{format}"
        return Response(content=data, media_type=MEDIA_TYPES[format],
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    @app.get("/api/trace/{trace_id}/node")
    async def node(
        request: Request,
        trace_id: str,
        kind: Literal["block", "attn", "embed"],
        pos: int,
        layer: int = -1,
        k: int = Query(10, ge=1, le=100),
        norm: int = Query(1, ge=0, le=1),
    ) -> dict[str, Any]:
        entry = use(trace_id)
        trace = entry.trace

        def work() -> dict[str, Any]:
            top = trace.top_tokens(kind, layer, pos, k, apply_norm=bool(norm))
            if kind == "embed":
                effects: dict[str, list] = {"promoted": [], "suppressed": []}
            else:
                effects = trace.block_write_tokens(layer, pos, "block" if kind == "block" else "attn", k)
            return {"top_tokens": top, **effects, "bias": trace.bias_share(kind, layer, pos)}

        return await on_model(request, entry.slot, work)

    @app.get("/api/trace/{trace_id}/edge")
    async def edge(request: Request, trace_id: str, layer: int, source: int, target: int) -> dict[str, Any]:
        entry = use(trace_id)
        trace = entry.trace
        layer, src, dst = trace.check_layer(layer), trace.position(source), trace.position(target)
        if src > dst:
            raise InvalidArgumentError(f"source {src} comes after target {dst}: attention only reads earlier positions; "
                                       "use a source at or before the target")
        row = await on_model(request, entry.slot, lambda: trace.attention_rows(layer, [dst])[dst])
        shares = row.heads[:, src].tolist()
        heads = sorted(({"head": h, "weight": w} for h, w in enumerate(shares)), key=lambda x: -x["weight"])
        return {"weight": float(sum(shares)), "heads": heads}

    @app.get("/api/trace/{trace_id}/head")
    async def head(request: Request, trace_id: str, layer: int, head: int, pos: int = -1) -> Response:
        entry = use(trace_id)
        trace = entry.trace
        layer, pos = trace.check_layer(layer), trace.position(pos)
        n_heads = trace.adapter.n_heads
        if not -1 <= head < n_heads:
            raise InvalidArgumentError(f"head {head} is out of range: use 0..{n_heads - 1}, or -1 for all heads")
        t = trace.n_positions
        if 2 * t * t * 8 > max_response:  # two T x T matrices, about 8 bytes a number in JSON
            raise TooLargeError(
                f"the attention matrices of {t} positions would take about {2 * t * t * 8 / 2**20:.0f} MiB; this server "
                f"answers at most {config.max_response_mb:g} MiB (max_response_mb): trace a shorter prompt")

        def work() -> bytes:
            pattern = trace.capture.layers[layer].pattern.float()
            rows = trace.attention_rows(layer, list(range(t)))
            contrib = torch.zeros(t, t)
            for i, row in rows.items():
                contrib[i, : i + 1] = row.heads.sum(0) if head == -1 else row.heads[head]
            if head == -1:
                effects = trace.block_write_tokens(layer, pos, "attn", 10)
                pat = pattern.mean(0)
            else:
                effects = trace.head_write_tokens(layer, pos, head, 10)
                pat = pattern[head]
            return json_bytes({
                "pattern": [[round(v, 5) for v in r] for r in pat.cpu().tolist()],
                "contributions": [[round(v, 5) for v in r] for r in contrib.tolist()],
                **effects,
            })

        return Response(content=await on_model(request, entry.slot, work), media_type="application/json")

    @app.get("/api/trace/{trace_id}/qk")
    async def qk(request: Request, trace_id: str, layer: int, head: int, query: int, key: int,
                 k: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
        """Why a head attends (routes-math.md section 9): the score of one edge split into pairs of parts."""
        entry = use(trace_id)
        return await on_model(request, entry.slot, lambda: entry.trace.why_attends(layer, head, query, key).to_dict(k))

    @app.get("/api/trace/{trace_id}/ffn")
    async def ffn(request: Request, trace_id: str, layer: int, pos: int, k: int = Query(20, ge=1, le=200),
                  contrast: ContrastQuery = Depends()) -> dict[str, Any]:
        """An FFN block's top neurons by importance; with a token or foil, also its neurons by
        |direct logit attribution| toward that contrast (`attribution`, docs/contrastive.md)."""
        entry = use(trace_id)
        trace = entry.trace

        def work() -> dict[str, Any]:
            neurons = trace.neurons(layer, pos, k)
            for n in neurons:
                n.update(trace.neuron_write_tokens(layer, pos, n["index"], 3))
            out = {"neurons": neurons, "all": trace.block_write_tokens(layer, pos, "ffn", 10)}
            if contrast.given():
                out["attribution"] = trace.neuron_attribution(layer, pos, k=k, **contrast.kwargs())
            return out

        return await on_model(request, entry.slot, work)

    @app.get("/api/trace/{trace_id}/neuron")
    async def neuron(request: Request, trace_id: str, layer: int, pos: int, neuron: int,
                     k: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
        entry = use(trace_id)
        return await on_model(request, entry.slot, lambda: entry.trace.neuron_write_tokens(layer, pos, neuron, k))

    add_why_endpoints(app, Endpoints(config=config, traces=traces, use=use, on_model=on_model,
                                     check_threshold=check_threshold, ready=ready))
    add_analysis_endpoints(app, config)

    @app.get("/api/debug")
    def debug() -> dict[str, Any]:
        """Memory and cache figures for debug mode."""
        if not config.debug:
            raise ForbiddenError("debug figures are off; start the server with \"debug\": true in its configuration")
        return {
            "resident_mb": round(_resident_bytes() / 2**20, 1),
            "traces_cached": len(traces.entries),
            "max_traces": traces.max_traces,
            "trace_cache_mb": round(traces.nbytes / 2**20, 1),
            "queue": queue.status(),
            "models": {name: slot.state for name, slot in registry.slots.items()},
            "torch_threads": torch.get_num_threads(),
            "kernel_compiled": bool(kernels._compiled),
        }

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "time": time.time()}

    # ---- the front end ------------------------------------------------------------------------
    index = STATIC_DIR / "index.html"
    if (STATIC_DIR / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=STATIC_DIR / "assets"), name="assets")

    @app.get("/", include_in_schema=False)
    def front_end() -> Any:
        if index.is_file():
            return FileResponse(index)
        return error_response(503, "no_front_end", "the web app bundle is missing; run `npm run build` in frontend/")

    if preload:
        threading.Thread(target=kernels.warm_up, name="warm-kernel", daemon=True).start()
        if config.default_model:
            try:
                registry.start(config.default_model)
            except RoutelensError:
                pass
    return app
