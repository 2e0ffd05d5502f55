"""The unit the hot path hands to the capture pipeline: bytes, headers, times and an id, nothing decoded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from infertap.logger.routing import InferenceProtocol, Route

#: Status of an exchange whose client went away before its answer was complete (nginx's convention).
CLIENT_CLOSED = 499
#: The route of an exchange not yet routed: the proxy sets the real one when it hands the exchange over.
UNROUTED = Route(InferenceProtocol.OTHER, "", "", "other")


@dataclass(slots=True)
class Exchange:
    """One request/response pair as the proxy saw it.

    Built on the proxy's hot path with no parsing beyond what forwarding needs; everything else (sampling,
    redaction, decoding, Arrow encoding) happens in the capture pipeline.

    Times: ``start_unix_ns`` / ``end_unix_ns`` are wall-clock nanoseconds since the Unix epoch (UTC);
    ``upstream_s`` and ``total_s`` are monotonic durations in seconds (``upstream_s`` is 0.0 when the upstream was
    never reached, e.g. a 413).
    Headers are ``(name, value)`` byte pairs exactly as received, neither decoded nor redacted: the capture stage
    decodes (Latin-1, as HTTP/1.1 field values are octets) only the allow-listed ones.
    ``*_body_bytes`` are the full body sizes even when the kept ``*_body`` was truncated to the capture cap.
    ``route`` is the exchange's route (:func:`infertap.logger.codecs.registry.route`): protocol, model, endpoint
    kind, binary header values (lengths parsed by the capture stage); computed once, when the proxy hands the
    exchange over, and used by the capture stage as it is.
    A response relayed chunk by chunk (unknown or over-cap length: event streams) carries, for the chunks kept for
    capture, ``chunk_arrivals_ns`` (monotonic ``time.perf_counter_ns()`` when each was relayed) and
    ``chunk_sizes`` (their bytes, which add up to ``response_body``); ``received_ns`` is the same clock when the
    request began to arrive. Both lists are ``None`` for a response read whole.
    """

    request_id: str
    start_unix_ns: int
    end_unix_ns: int
    upstream_s: float
    total_s: float
    method: str
    path: str
    query: str
    status_code: int
    request_headers: list[tuple[bytes, bytes]]
    response_headers: list[tuple[bytes, bytes]]
    request_body: bytes
    response_body: bytes
    request_body_bytes: int
    response_body_bytes: int
    request_truncated: bool = False
    response_truncated: bool = False
    error: str = ""
    route: Route = UNROUTED
    received_ns: int = 0
    chunk_arrivals_ns: list[int] | None = None
    chunk_sizes: list[int] | None = None


class ExchangeConsumer(Protocol):
    """What the proxy hands exchanges to: the local capture pipeline or the forward-mode framer.

    ``offer`` runs on the event loop for every exchange: it must never wait (a length check and a
    ``deque.append``) and answers ``False`` when the exchange was dropped (and counted) because its queue is full.
    """

    def offer(self, exchange: Exchange) -> bool:
        """Take ``exchange`` without waiting; ``False`` when it was dropped."""
        ...
