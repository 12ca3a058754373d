"""Cloud routes (issue 18): OpenAI, Anthropic (native Messages API) and OpenAI-compatible providers.

Nothing in this package is reached unless a route says `kind: cloud`. The modules are small and mostly pure:

  settings.py        the `cloud:` options of a cloud route (pydantic, read at load time only)
  privacy.py         config checks and request-time rules: when a request may leave the house
  providers.py       per-provider URL, auth headers and body translation hooks for one attempt
  anthropic_req.py   OpenAI chat body -> Anthropic Messages body (text, images, tools, tool results)
  anthropic_resp.py  Anthropic message -> OpenAI chat.completion (content, tool calls, usage, finish reason)
  anthropic_sse.py   Anthropic streaming events -> OpenAI chat.completion.chunk SSE, as a response wrapper
  prices.py          provider list prices (USD per million tokens) and cost arithmetic
  spend.py           cloud spend and "saved vs cloud" per app, money budgets, /stats and /metrics
"""
