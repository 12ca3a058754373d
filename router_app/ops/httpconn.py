"""How the router's and the MCP bridge's connections end when the process stops: a request already on its way is
answered, not cut.

On SIGTERM uvicorn closes at once every connection with no request in progress. With socket activation
(roles/router's homelab-router.socket) a connection accepted just before the stop, whose request was still on its
way, was closed under a request Caddy had already sent; Caddy cannot re-send a POST, so the client got a 502 (CI,
tests/lab "router restart under load"). `HttpProtocol` (uvicorn's httptools protocol, `http=HttpProtocol` in
uvicorn.run) gives such a connection FRESH_GRACE_S (it never carried a request) or IDLE_GRACE_S (idle keep-alive:
a client may have sent on it just now) for a request to arrive; that request is served with `Connection: close`,
then the connection ends. A connection with a request in progress finishes it first, as before; one that stays
silent is closed when its grace ends, so it cannot hold the stop.
"""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FRESH_GRACE_S = 2.0     # on shutdown: a connection that never carried a request waits this long for its first
IDLE_GRACE_S = 0.5      # on shutdown: an idle keep-alive connection


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; on shutdown a request already on its way is still answered."""

    def connection_made(self, transport) -> None:    # type: ignore[override]
        self._in_message = False     # a request's first byte has been parsed and its last has not
        self._draining = False       # the server is stopping: the next request is this connection's last
        self._grace = None
        super().connection_made(transport)

    def connection_lost(self, exc) -> None:
        if self._grace is not None:
            self._grace.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._in_message = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False     # answered with Connection: close, then the connection ends

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def shutdown(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False                  # in progress: finish it, then close
            return
        self._draining = True
        if self._in_message:                          # a request's headers are arriving: it is the last one
            return
        grace = FRESH_GRACE_S if cycle is None else IDLE_GRACE_S
        self._grace = self.loop.call_later(grace, self._end_idle)

    def _end_idle(self) -> None:
        self._grace = None
        cycle = self.cycle
        if self._in_message or (cycle is not None and not cycle.response_complete):
            return                   # a request came: the connection ends when it is answered
        if not self.transport.is_closing():
            self.transport.close()
