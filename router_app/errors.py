"""The one error type every room raises: answered to the client as an OpenAI-shaped JSON body."""
from __future__ import annotations

from typing import Optional


class ApiError(Exception):
    """An error answered to the client as an OpenAI-shaped JSON body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: Optional[str] = None, headers: Optional[dict] = None, param: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
