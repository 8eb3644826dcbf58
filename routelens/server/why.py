"""The endpoints that ask why (docs/api.md "Asking why"): direct logit attribution toward a token
or against a foil, a route checked by knockout, and two traced prompts compared.

Each validates, bounds the work before it starts (trials, positions, thresholds of a curve) and
hands it to the library through the device's work queue, like the endpoints of app.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ForbiddenError, InvalidArgumentError, TooLargeError
from ..routes.verify import CURVE_THRESHOLDS
from .config import ServerConfig
from .params import ContrastQuery, graph_target, json_bytes
from .state import TraceCache

MAX_CURVE_POINTS = 8


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trace_a: str = Field(..., min_length=1, max_length=64)
    trace_b: str = Field(..., min_length=1, max_length=64)
    target_a: int = -1
    target_b: int = -1
    threshold: float = Field(0.04, ge=0.0, le=1.0)
    top: int = Field(20, ge=1, le=200)


@dataclass
class Endpoints:
    """What these endpoints share with the app's own (server/app.py builds it)."""

    config: ServerConfig
    traces: TraceCache
    use: Callable[[str], Any]
    on_model: Callable[..., Any]
    check_threshold: Callable[[float], None]
    ready: Callable[..., Any]


def curve_thresholds(text: str | None) -> tuple[float, ...]:
    """`thresholds=0.01,0.04,...` (at most MAX_CURVE_POINTS numbers in 0..1), or the default curve."""
    if text is None or not text.strip():
        return CURVE_THRESHOLDS
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidArgumentError(f"thresholds {text!r} are not numbers: give them comma-separated, "
                                   "e.g. 0.01,0.04,0.16") from None
    if not values or len(values) > MAX_CURVE_POINTS or not all(0.0 <= v <= 1.0 for v in values):
        raise InvalidArgumentError(f"give 1 to {MAX_CURVE_POINTS} thresholds between 0 and 1, not {text!r}")
    return values


def add_why_endpoints(app: FastAPI, ctx: Endpoints) -> None:
    """Register /attribution, /verify and /api/compare on `app`."""
    config = ctx.config

    @app.get("/api/trace/{trace_id}/attribution")
    async def attribution(request: Request, trace_id: str, pos: int = -1,
                          contrast: ContrastQuery = Depends()) -> dict[str, Any]:
        """Direct logit attribution at `pos` toward `token` (default: the top prediction), against
        `foil` when given: every head, attention bias and FFN write of every layer, signed."""
        entry = ctx.use(trace_id)
        return await ctx.on_model(request, entry.slot,
                                  lambda: entry.trace.logit_attribution(pos, **contrast.kwargs()))

    @app.get("/api/trace/{trace_id}/verify")
    async def verify(request: Request, trace_id: str, target: str = Query("-1", max_length=12),
                     threshold: float = Query(0.04, ge=0.0, le=1.0), renormalise: bool = False,
                     trials: int = Query(5, ge=1, le=50), seed: int = Query(0, ge=0, le=2**31 - 1),
                     curve: bool = False, thresholds: str | None = Query(None, max_length=200),
                     contrast: ContrastQuery = Depends()) -> Response:
        """The route checked by knockout (docs/verify.md): the target's probability and logit with
        only the route's attention edges, against random knockouts of the same weight; with
        `curve`, one report per threshold."""
        from ..routes.verify import verify_route

        entry = ctx.use(trace_id)
        trace = entry.trace
        pos = graph_target(target)
        if pos == "all":
            raise InvalidArgumentError("a route is verified from one position; give target as a position")
        pos = trace.position(pos)
        points = curve_thresholds(thresholds) if curve else (threshold,)
        if trials > config.max_verify_trials:
            raise ForbiddenError(f"this server runs at most {config.max_verify_trials} random knockouts a check "
                                 "(max_verify_trials): ask for fewer trials")
        if pos + 1 > config.max_verify_positions:
            raise TooLargeError(f"a check reruns the {pos + 1} positions up to the target; this server reruns at most "
                                f"{config.max_verify_positions} (max_verify_positions): pick an earlier target")
        for value in points:
            ctx.check_threshold(value)
        token = contrast.token

        def work() -> bytes:
            reports = []
            for value in points:
                graph = trace.graph(target=pos, threshold=value, max_edges=config.max_graph_edges, **contrast.kwargs())
                reports.append(verify_route(trace, graph, token=token, renormalise=renormalise, trials=trials,
                                            seed=seed).to_dict())
            return json_bytes({"reports": reports} if curve else reports[0])

        return Response(content=await ctx.on_model(request, entry.slot, work), media_type="application/json")

    @app.post("/api/compare")
    async def compare(request: Request, body: CompareRequest) -> Response:
        """Two traced prompts on one model compared (routes/compare.py): one graph over the aligned
        tokens whose edges carry both weights and their change, and the heads and neurons whose
        importance changed most."""
        from ..routes.compare import compare_routes

        a, b = ctx.use(body.trace_a), ctx.use(body.trace_b)
        ctx.check_threshold(body.threshold)
        if a.slot is not b.slot:
            raise InvalidArgumentError("the two traces come from different models; trace both prompts with one model")

        def work() -> bytes:
            result = compare_routes(a.trace, b.trace, target_a=body.target_a, target_b=body.target_b,
                                    threshold=body.threshold, top=body.top)
            if len(result.graph.edges) > config.max_graph_edges:
                raise TooLargeError(f"the compared routes have {len(result.graph.edges)} edges; this server draws at "
                                    f"most {config.max_graph_edges}: raise the threshold")
            return json_bytes(result.to_dict())

        return Response(content=await ctx.on_model(request, a.slot, work), media_type="application/json")
