"""uvicorn's httptools protocol with a deadline on request headers.

A module of its own because uvicorn spawns ``--workers N`` processes from a pickled
configuration and each imports the protocol class by its dotted name (:data:`IMPORT_PATH`);
a class made inside a function can be neither pickled nor imported. Importing this module
raises ``ImportError`` when httptools is not installed (uvicorn's h11 fallback then runs
without the deadline).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: What uvicorn's ``http=`` setting is given, in the parent and in every worker.
IMPORT_PATH = "nnkd.serve._protocol:GuardedHttpTools"


class GuardedHttpTools(HttpToolsProtocol):
    """A client that opens a connection (or starts a request) and stalls before its headers
    are complete is disconnected after :attr:`header_timeout_s`, so stalled sockets cannot
    pile up. Between requests on a kept-alive connection the deadline is re-armed."""

    #: Seconds allowed for a request's headers; set once per server process, before it accepts
    #: connections (:func:`nnkd.serve._server.run_server`, or ``worker_app`` in each worker).
    header_timeout_s: float = 10.0
    _header_timer = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()                  # the next request's headers get the same deadline

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
