"""Ollama's per-model keep_alive, applied where Ollama accepts it (router_app/decision/durations.py: the forms).

The router talks to Ollama through its OpenAI-compatible API, which has no keep_alive field (openai/openai.go,
ChatCompletionRequest; docs/openai.md lists none; ollama/ollama#9355): a model that such a request loads stays for
the server's OLLAMA_KEEP_ALIVE. Ollama's scheduler (server/sched.go: load, useLoadedRunner) takes a loaded model's
keep_alive from a request only when the request carries one, and keeps it for later requests that carry none. So:

    after_answer(app, ctx)   after a 200 from a route whose model has a keep_alive, on a task of its own: POST {model,
                             keep_alive} to /api/generate, no prompt (docs/api.md "Load a model"): the model stays
                             as set from then on however it was loaded (by this request, after an eviction, after an
                             engine restart); keep_alive 0 unloads it at once (docs/api.md "Unload a model"). Not for
                             /v1/embeddings: /api/generate refuses a model that cannot generate.
    for_url(routes, url)     model -> keep_alive over the routes of one Ollama server (one server, many models):
                             the catalog's loads (adapters.OllamaAdapter.load) send it.
"""
from __future__ import annotations

import asyncio

from ..decision import durations
from ..ops.telemetry import now_iso
from .adapters import OllamaAdapter

_PENDING: set = set()      # the calls in flight (a task nobody references may be collected before it ends)


def for_url(routes, url: str) -> dict:
    return {r.model: durations.api_value(r.keep_alive) for r in routes.values()
            if r.url == url and r.keep_alive is not None and r.kind == "local"}


def _model_of(ctx, route) -> str:
    p = getattr(ctx, "catalog", None)
    return p.model if p is not None and p.choice == ctx.route else route.model


def after_answer(app, ctx, status: int) -> None:
    """Schedules the call on its own task: the answer is already out, and the request's own task is cancelled as soon
    as the client is done with it. Never raises; a refusal goes to the failures log."""
    rt = ctx.rt
    r = rt.config.routes.get(ctx.route)
    if status != 200 or r is None or ctx.endpoint == "embeddings":
        return
    model = _model_of(ctx, r)
    value = for_url(rt.config.routes, r.url).get(model)
    if value is None:
        return
    st = rt.states.get(ctx.route)
    hdrs = {k: v for k, v in (st.headers if st else {}).items() if k == "Authorization"}
    ad = OllamaAdapter(app.session, r.url, hdrs)
    task = asyncio.get_running_loop().create_task(
        _keep(app, ad, ctx.route, ctx.req_id, model, value, r.connect_timeout_s + 5))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


async def _keep(app, adapter, route: str, req_id: str, model: str, value, timeout_s: float) -> None:
    try:
        await adapter.keep(model, value, timeout_s)
    except Exception as exc:    # noqa: BLE001 - a keep_alive that did not take must not turn a 200 into an error
        app.logs.failures.write({"ts": now_iso(), "id": req_id, "route": route, "kind": "keep_alive",
                                 "model": model, "error": f"{type(exc).__name__}: {exc}"})
