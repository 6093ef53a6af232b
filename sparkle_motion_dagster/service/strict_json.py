"""Request bodies and validation errors the service can always answer with a 4xx.

A body is at most a plan's size limit and a little more (413 beyond). Python's JSON
reader takes ``NaN``, ``Infinity`` and ``1e400`` (a float that overflows to infinity),
none of which is JSON; a body holding one is refused here with ``422``
before any route sees it. A validation error is answered without echoing values that
JSON cannot carry (the echo itself used to fail, as a ``500``)."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sparkle_motion_dagster.film.plan import MAX_JSON_DEPTH, MAX_PLAN_BYTES, nesting_depth

MAX_BODY_BYTES = MAX_PLAN_BYTES + 64 * 1024


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"{text[:32]} is too large for a JSON number")
    return value


async def finite_json_body(request: Request) -> None:
    """A dependency: a POST body must be UTF-8 JSON with finite numbers and at most
    ``MAX_JSON_DEPTH`` levels of nesting, or the request is answered 422 naming ``body``."""
    if request.method != "POST":
        return
    raw = await request.body()  # starlette keeps it: the route reads the same bytes
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail=f"body: {len(raw)} bytes; at most {MAX_BODY_BYTES} "
                                                    f"(a plan of at most {MAX_PLAN_BYTES} bytes and its options)")
    too_deep = f"body: lists and objects nest deeper than {MAX_JSON_DEPTH} levels"
    if not raw:
        return  # the route's own validation says what is missing
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
    except _NotJson as exc:
        raise HTTPException(status_code=422, detail=f"body: {exc}") from None
    except UnicodeDecodeError as exc:
        raise HTTPException(status_code=422, detail=f"body: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise HTTPException(status_code=422, detail=f"body: not valid JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError:  # an integer longer than Python converts
        raise HTTPException(status_code=422, detail="body: a number has too many digits") from None
    except RecursionError:
        raise HTTPException(status_code=422, detail=too_deep) from None
    if nesting_depth(value, limit=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise HTTPException(status_code=422, detail=too_deep)


def _carried(value: Any) -> bool:
    """Whether JSON carries ``value`` as it is."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 for a malformed query or body: where the problem is (``loc``) and what it
    is (``msg``), echoing the value (``input``) only when JSON can carry it."""
    errors = [{key: value for key, value in error.items() if key in ("type", "loc", "msg")
               or (key == "input" and _carried(value))} for error in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)
