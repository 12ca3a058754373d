"""The model catalog (issue 14): every model each catalogued engine has, its state, residency and placement.

    settings.py   the config schema (a route's `catalog:` block; the top-level `catalog:` settings)
    model.py      states and the plain records the other modules share (no I/O)
    adapters.py   one adapter per engine API: list models, read load, load, unload
    registry.py   the catalog, refreshed in the background (requests never fan out to engines)
    placement.py  pure functions: where a model goes, and what to evict to make room
    vram.py       pure functions: the VRAM ledger from the node agents' card figures (fresh) or learned sizes
    loader.py     single-flight loads: one load per (route, model) however many requests wait
    service.py    what the pipeline, the admin API, the CLI and an MCP bridge call
    glue.py       the /v1 pipeline's hooks (decide, prepare, before_route for keyword/alias/pin traffic, finish)

Nothing here imports router_app.v1, router_app.ops or router_app.decision.policy: they import it.
"""
