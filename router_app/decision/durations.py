"""Ollama's keep_alive, as a route setting (`keep_alive` on a route served by Ollama).

Ollama takes keep_alive per request on its native API only (docs/api.md "Generate a completion" / "Generate a chat
completion": keep_alive; docs/faq.md "How do I keep a model loaded in memory or make it unload immediately?"). Its
decoder (api/types.go, Duration.UnmarshalJSON) accepts a JSON number of seconds (negative: forever) or a Go duration
string (time.ParseDuration: "10m", "1h30m", "-1m"; negative: forever; "0": unload). A bare "-1" *string* is refused
there ("time: missing unit in duration"), although OLLAMA_KEEP_ALIVE and the inventory accept it, so a whole-number
string is sent as a number (`api_value`). The OpenAI-compatible /v1/chat/completions has no keep_alive field
(openai/openai.go ChatCompletionRequest; ollama/ollama#9355): router_app/catalog/keep_alive.py applies it.
"""
from __future__ import annotations

import re
from typing import Optional, Union

KeepAlive = Union[int, str]

_WHOLE = re.compile(r"[-+]?\d+")
# Go's time.ParseDuration: an optional sign, then one or more <decimal><unit>; "0" alone needs no unit
_GO = re.compile(r"[-+]?(?:0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)")


def check(value: object) -> KeepAlive:
    """The value itself, or ValueError saying what Ollama takes."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"keep_alive must be whole seconds or a duration such as 10m, 1h30m, -1 (forever) or 0, "
                         f"got {type(value).__name__}")
    if isinstance(value, str) and not (_WHOLE.fullmatch(value) or _GO.fullmatch(value)):
        raise ValueError(f"keep_alive {value!r} is not a duration Ollama accepts (whole seconds, or a Go duration "
                         "such as 10m, 1h30m, -1m; units ns us ms s m h)")
    return value


def api_value(value: Optional[KeepAlive]) -> Optional[KeepAlive]:
    """The JSON value for Ollama's API: whole seconds as a number, any other duration as its string."""
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(value)
    return value


def is_zero(value: Optional[KeepAlive]) -> bool:
    """keep_alive 0 ("unload once answered"): on a request with no prompt Ollama unloads the model instead."""
    v = api_value(value)
    return v == 0 if isinstance(v, int) else isinstance(v, str) and re.search(r"[1-9]", v) is None
