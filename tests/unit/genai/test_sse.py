"""The incremental event-stream parser, fed the way a relay sees a stream: arbitrary chunk boundaries."""

from __future__ import annotations

import pytest

from infertap.logger.genai.sse import SSEEvent, SSEParser

STREAM = (
    b": ping - 2026-01-01 00:00:00\r\n\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b"event: update\nid: 7\ndata: first\ndata:second\n\n"
    b"data: caf\xc3\xa9\r\rdata: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}'),
    SSEEvent("first\nsecond", "update", "7"),
    SSEEvent("café"),
    SSEEvent("[DONE]"),
]


def _strip(events: list[SSEEvent]) -> list[SSEEvent]:
    return [SSEEvent(e.data, e.event, e.id) for e in events]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, len(STREAM)])
def test_every_split_gives_the_same_events(size: int) -> None:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i in range(0, len(STREAM), size):
        events += parser.feed(STREAM[i : i + size])
    events += parser.close()
    assert _strip(events) == EXPECTED
    assert parser.comments == 1
    assert parser.incomplete == 0
    assert parser.invalid_utf8 == 0


def test_event_is_stamped_with_the_chunk_that_completed_it() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: he", at=10) == []
    assert parser.feed(b"llo\n", at=20) == []
    done = parser.feed(b"\ndata: x\n\ndata: y", at=30)
    assert [(e.data, e.at) for e in done] == [("hello", 30), ("x", 30)]
    assert [(e.data, e.at) for e in parser.feed(b"\n\n", at=40)] == [("y", 40)]


def test_cr_at_chunk_end_waits_for_a_possible_lf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    # the LF completes CRLF, not a blank line: the event is dispatched only by the next blank line
    assert parser.feed(b"\n") == []
    assert [e.data for e in parser.feed(b"\r\n")] == ["a"]


def test_bom_split_across_chunks_is_skipped() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"\xbb") == []
    assert [e.data for e in parser.feed(b"\xbfdata: z\n\n")] == ["z"]


def test_stream_cut_inside_an_event_is_counted_not_dispatched() -> None:
    parser = SSEParser()
    assert [e.data for e in parser.feed(b"data: whole\n\ndata: half")] == ["whole"]
    assert parser.close() == []
    assert parser.incomplete == 1


def test_invalid_utf8_is_replaced_and_counted() -> None:
    parser = SSEParser()
    events = parser.feed(b"data: \xff\xfe\n\n")
    assert events[0].data == "\ufffd\ufffd"
    assert parser.invalid_utf8 == 1


def test_event_without_data_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: x\nid: 1\n\nretry: 10\n\n") == []
