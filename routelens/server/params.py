"""Query parameters and JSON answers that the endpoint modules (app.py, why.py) share."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Query

from ..errors import InvalidArgumentError


def graph_target(value: str) -> int | str:
    """The `target` query parameter: "all" (every position's route) or an integer position."""
    text = value.strip()
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise InvalidArgumentError(f"target {value!r} is not a position: give a token position (an integer, "
                                   f"negative from the end) or \"all\" for every position") from None


def json_bytes(content: Any) -> bytes:
    """JSON as the API sends it (strict: no NaN), encoded where it is called: big answers are
    encoded in a worker thread so the event loop (health checks, other clients) never waits."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class ContrastQuery:
    """The token and foil of a request, each as text (`token`, `foil`) or as an id (`token_id`,
    `foil_id`); none given: the plain route and the model's top prediction."""

    def __init__(self, token: str | None = Query(None, max_length=200),
                 token_id: int | None = Query(None, ge=0),
                 foil: str | None = Query(None, max_length=200),
                 foil_id: int | None = Query(None, ge=0)) -> None:
        token, foil = token or None, foil or None  # an empty `token=` is no token (" " is a token: kept)
        for text, number, name in ((token, token_id, "token"), (foil, foil_id, "foil")):
            if text is not None and number is not None:
                raise InvalidArgumentError(f"give the {name} as text ({name}=) or as an id ({name}_id=), not both")
        self.token = token_id if token_id is not None else token
        self.foil = foil_id if foil_id is not None else foil

    def given(self) -> bool:
        return self.token is not None or self.foil is not None

    def kwargs(self) -> dict[str, Any]:
        return {"token": self.token, "foil": self.foil}
