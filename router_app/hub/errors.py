"""The hub's error: status + code + message (+ param), turned into an OpenAI-shaped error by the API layer."""
from __future__ import annotations

from typing import Optional


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str, param: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
