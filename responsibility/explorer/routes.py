"""The explorer's endpoints. Each checks its parameters (run index, example ids, ranges, page sizes) before any
work, then hands over to :mod:`responsibility.explorer.views` (reads) or the curation and the job manager
(changes). Slow first computations run in Starlette's thread pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from responsibility.choices import CURATION_ACTIONS, SUSPECT_FILTERS
from responsibility.curation import FILE_NAME, Curation
from responsibility.explorer import derived, views
from responsibility.explorer.app import Explorer, HTTPError
from responsibility.explorer.run import Run
from responsibility.explorer.thumbnails import to_png

__all__ = ["STATIC", "routes"]

STATIC = Path(__file__).parent / "static"
MAX_PAGE = 500
MAX_BODY = 1 << 20
_REQUIRED = object()
_BODY_KEYS = {"action", "ids", "top", "label", "factor", "text", "reason"}


def _explorer(request: Request) -> Explorer:
    return request.app.state.explorer


def _run(request: Request) -> tuple[int, Run]:
    r = int(request.path_params["r"])
    return r, _explorer(request).run(r)


def _query_int(request: Request, name: str, lo: int, hi: int, default: Any = _REQUIRED) -> Any:
    text = request.query_params.get(name, "")
    if text == "":
        if default is _REQUIRED:
            raise HTTPError(400, f"missing query parameter {name!r}")
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPError(400, f"{name} must be an integer, got {text!r}") from None
    if not lo <= value <= hi:
        raise HTTPError(400, f"{name}={value} is outside [{lo}, {hi}]")
    return value


def _query_choice(request: Request, name: str, allowed: tuple[str, ...] | list[str], default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in allowed:
        raise HTTPError(400, f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _path_id(request: Request, name: str, size: int) -> int:
    i = int(request.path_params[name])
    if not 0 <= i < size:
        raise HTTPError(404, f"{name}={i} is outside [0, {size})")
    return i


def _page(request: Request) -> tuple[int, int]:
    return _query_int(request, "offset", 0, 1 << 40, 0), _query_int(request, "limit", 1, MAX_PAGE, 50)


# ---------------------------------------------------------------------------------------------------- reads
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def no_icon(request: Request) -> Response:
    return Response(status_code=204)


def list_runs(request: Request) -> JSONResponse:
    ex = _explorer(request)
    out = []
    for j in range(len(ex.runs)):
        run = ex.run(j)
        out.append({"index": j, **run.describe(), "scores": derived.score_names(run)})
    return JSONResponse(out)


def suspects(request: Request) -> JSONResponse:
    r, run = _run(request)
    offset, limit = _page(request)
    doc = views.suspects(
        run,
        _explorer(request).curation(r).state,
        score=_query_choice(request, "score", derived.score_names(run), derived.score_names(run)[0]),
        descending=_query_choice(request, "order", ("desc", "asc"), "desc") == "desc",
        cls=_query_int(request, "cls", 0, run.num_classes - 1, None),
        only=_query_choice(request, "only", SUSPECT_FILTERS, "all"),
        offset=offset,
        limit=limit,
    )
    return JSONResponse(doc)


def detection(request: Request) -> JSONResponse:
    return JSONResponse(views.detection(_run(request)[1]))


def confusion(request: Request) -> JSONResponse:
    return JSONResponse(views.confusion(_run(request)[1]))


def tests(request: Request) -> JSONResponse:
    run = _run(request)[1]
    offset, limit = _page(request)
    c = run.num_classes - 1
    doc = views.tests(
        run,
        true=_query_int(request, "true", 0, c, None),
        predicted=_query_int(request, "predicted", 0, c, None),
        errors=_query_choice(request, "errors", ("0", "1"), "0") == "1",
        offset=offset,
        limit=limit,
    )
    return JSONResponse(doc)


def test_input(request: Request) -> JSONResponse:
    r, run = _run(request)
    i = _path_id(request, "i", run.num_tests)
    return JSONResponse(views.test_input(run, i, _explorer(request).curation(r).state))


def classes(request: Request) -> JSONResponse:
    r, run = _run(request)
    k = _query_int(request, "k", 1, 50, 8)
    return JSONResponse(views.classes(run, _explorer(request).curation(r).state, k))


def example(request: Request) -> JSONResponse:
    r, run = _run(request)
    i = _path_id(request, "i", run.num_examples)
    ex = _explorer(request)
    return JSONResponse(views.example(list(ex.runs), r, i, ex.curation(r).state))


def thumbnail(request: Request) -> Response:
    r, run = _run(request)
    split = request.path_params["split"]
    if split not in ("train", "test"):
        raise HTTPError(404, f"split must be train or test, got {split!r}")
    i = _path_id(request, "i", run.num_examples if split == "train" else run.num_tests)
    normalize = getattr(run.datamodule, "normalize", None)
    png = _explorer(request).thumbnails.get((str(run.dir), split, i), lambda: to_png(run.images(split)[i], normalize))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


def compare(request: Request) -> JSONResponse:
    ex = _explorer(request)
    last = len(ex.runs) - 1
    a, b = _query_int(request, "a", 0, last), _query_int(request, "b", 0, last)
    if a == b:
        raise HTTPError(400, "choose two different runs to compare")
    return JSONResponse(views.compare(ex.run(a), ex.run(b), None))


def job(request: Request) -> JSONResponse:
    return JSONResponse(_explorer(request).jobs.status() or {"state": "none"})


# ---------------------------------------------------------------------------------------------------- curation
def curation_json(run: Run, cur: Curation) -> dict[str, Any]:
    """The working curation as the Curation view shows it: changes newest first, and what they add up to."""
    st = cur.state
    original = run.original_labels
    return {
        "file": FILE_NAME,
        "changes": [{"seq": j, **c.to_json(run.class_names)} for j, c in enumerate(cur.changes)][::-1],
        "undone": [c.to_json(run.class_names) for c in cur.undone[-20:]][::-1],
        "summary": {
            "relabelled": sum(1 for i, label in st.labels.items() if label != original[i]),
            "removed": len(st.removed),
            "reweighted": len(st.weights),
            "notes": len(st.notes),
            "tagged": len(st.tags),
        },
        "tags": sorted({t for tags in st.tags.values() for t in tags}),
    }


def get_curation(request: Request) -> JSONResponse:
    r, run = _run(request)
    return JSONResponse(curation_json(run, _explorer(request).curation(r)))


async def _json_body(request: Request) -> dict[str, Any]:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise HTTPError(413, f"request body over {MAX_BODY} bytes")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPError(413, f"request body over {MAX_BODY} bytes")
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise HTTPError(400, "the request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return doc


def _target_ids(body: dict[str, Any], run: Run) -> list[int]:
    """The ids a change is for: ``ids`` (a list), or ``top`` = {score, k, cls} (the top k of a ranking)."""
    if ("ids" in body) == ("top" in body):
        raise HTTPError(400, "give either ids (a list of example ids) or top ({score, k, cls})")
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not 0 < len(ids) <= run.num_examples:
            raise HTTPError(400, f"ids must be a list of 1..{run.num_examples} example ids")
        return ids  # types and ranges are checked by Curation.record
    top = body["top"]
    if not isinstance(top, dict) or set(top) - {"score", "k", "cls"}:
        raise HTTPError(400, "top must be an object {score, k, cls}")
    name, k, cls = top.get("score"), top.get("k"), top.get("cls")
    if name not in derived.score_names(run):
        raise HTTPError(400, f"top.score must be one of {derived.score_names(run)}; got {name!r}")
    if type(k) is not int or not 1 <= k <= run.num_examples:
        raise HTTPError(400, f"top.k must be an integer in [1, {run.num_examples}]; got {k!r}")
    if cls is not None and (type(cls) is not int or not 0 <= cls < run.num_classes):
        raise HTTPError(400, f"top.cls must be null or a class in [0, {run.num_classes}); got {cls!r}")
    return views.top_ids(run, name, k, cls)


async def post_curation(request: Request) -> JSONResponse:
    r, run = _run(request)
    body = await _json_body(request)
    unknown = set(body) - _BODY_KEYS
    if unknown:
        raise HTTPError(400, f"unknown fields {sorted(unknown)}")
    action = body.get("action")
    if action not in CURATION_ACTIONS:
        raise HTTPError(400, f"action must be one of {', '.join(CURATION_ACTIONS)}; got {action!r}")
    ids = await run_in_threadpool(_target_ids, body, run)
    values = {key: body.get(key) for key in ("label", "factor", "text")}
    reason = body.get("reason", "")

    def record(cur: Curation) -> None:
        cur.record(action, ids, reason=reason, **values)

    cur = await run_in_threadpool(_explorer(request).change_curation, r, record)
    return JSONResponse(curation_json(run, cur))


async def undo(request: Request) -> JSONResponse:
    r, run = _run(request)
    cur = await run_in_threadpool(_explorer(request).change_curation, r, lambda c: c.undo())
    return JSONResponse(curation_json(run, cur))


async def retrain(request: Request) -> JSONResponse:
    r, run = _run(request)
    ex = _explorer(request)
    cur = ex.curation(r)
    if not cur.changes:
        raise HTTPError(400, "the curation has no changes yet: relabel, remove or reweight examples first")
    if not run.curation_path.is_file():
        await run_in_threadpool(ex.change_curation, r, lambda c: None)  # the job trains from the saved file
    return JSONResponse(ex.jobs.start(r, run.dir))


async def cancel_job(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_explorer(request).jobs.cancel))


def routes() -> list[BaseRoute]:
    run = "/api/runs/{r:int}"
    return [
        Route("/", index),
        Route("/favicon.ico", no_icon),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/runs", list_runs),
        Route(f"{run}/suspects", suspects),
        Route(f"{run}/detection", detection),
        Route(f"{run}/confusion", confusion),
        Route(f"{run}/tests", tests),
        Route(f"{run}/tests/{{i:int}}", test_input),
        Route(f"{run}/classes", classes),
        Route(f"{run}/examples/{{i:int}}", example),
        Route(f"{run}/thumbs/{{split}}/{{i:int}}", thumbnail),
        Route(f"{run}/curation", get_curation),
        Route(f"{run}/curation", post_curation, methods=["POST"]),
        Route(f"{run}/curation/undo", undo, methods=["POST"]),
        Route(f"{run}/retrain", retrain, methods=["POST"]),
        Route("/api/job", job),
        Route("/api/job/cancel", cancel_job, methods=["POST"]),
        Route("/api/compare", compare),
    ]
