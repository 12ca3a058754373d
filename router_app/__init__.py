"""homelab-router: deterministic OpenAI-compatible gateway.

Subpackages (rooms), each importing only those listed before it:
  errors.py   the OpenAI-shaped ApiError every room raises
  decision/   config schema, policy (decide), inventory compiler
  access/     keys, budgets, rate limits, ledger, audit, structured outputs
  ops/        telemetry (metrics, logs) and the FastAPI operational/admin app
  dispatch/   upstream states, health probes, forward with spill/failover, SSE filter
  v1/         the OpenAI surface: raw ASGI app and the request pipeline
  cli/        the homelab-router command
"""
__version__ = "0.1.0"
