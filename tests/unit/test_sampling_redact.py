"""Sampling (errors always kept) and header redaction, down to the bytes of written Parquet files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from infertap.logger import batching
from infertap.logger.config import ALWAYS_REDACTED_HEADERS, ProxySettings
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import HeaderFilter
from infertap.logger.sampling import Sampler
from infertap.logger.sinks.file import FileSink
from tests.unit.conftest import CapturerFactory, counter, make_exchange, raw_headers


@pytest.mark.parametrize(
    "failed",
    [
        {"status_code": 400},
        {"status_code": 404},
        {"status_code": 413},
        {"status_code": 500},
        {"status_code": 503},
        {"status_code": 502, "error": "upstream unreachable: ClientConnectorError"},
        {"status_code": 504, "error": "upstream timeout"},
        {"status_code": 200, "error": "response stream broken"},
    ],
)
def test_rate_zero_keeps_only_failures(
    make_capturer: CapturerFactory, metrics: ProxyMetrics, failed: dict[str, object]
) -> None:
    capturer = make_capturer(rate=0.0)
    ok = [capturer.process(make_exchange(status_code=code)) for code in (200, 201, 204, 301, 399) * 200]
    assert ok == [None] * 1000
    assert counter(metrics, "infertap_capture_sampled_out_total") == 1000
    rec = capturer.process(make_exchange(**failed))
    assert rec is not None
    assert rec.status_code == failed["status_code"]
    assert rec.sample_rate == 0.0
    assert counter(metrics, "infertap_capture_records_total") == 1


def test_rate_one_keeps_everything(make_capturer: CapturerFactory) -> None:
    capturer = make_capturer(rate=1.0)
    assert all(capturer.process(make_exchange()) is not None for _ in range(500))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rate_is_honoured_within_binomial_tolerance(make_capturer: CapturerFactory, seed: int) -> None:
    n, p = 10_000, 0.3
    capturer = make_capturer(rate=p, seed=seed)
    kept = sum(capturer.process(make_exchange()) is not None for _ in range(n))
    sd = math.sqrt(n * p * (1 - p))  # about 46
    assert abs(kept - n * p) < 5 * sd


def test_errors_are_kept_on_top_of_the_sampled_share() -> None:
    sampler = Sampler(0.3, seed=11)
    exchanges = [make_exchange(status_code=500 if i % 10 == 0 else 200) for i in range(10_000)]
    kept = [ex for ex in exchanges if sampler.keep(ex)]
    assert sum(ex.status_code == 500 for ex in kept) == 1000
    ok_kept = sum(ex.status_code == 200 for ex in kept)
    assert abs(ok_kept - 2700) < 5 * math.sqrt(9000 * 0.3 * 0.7)


def test_same_seed_same_decisions() -> None:
    ex = make_exchange()
    a, b, c = Sampler(0.5, seed=4), Sampler(0.5, seed=4), Sampler(0.5, seed=5)
    decisions_a = [a.keep(ex) for _ in range(200)]
    assert decisions_a == [b.keep(ex) for _ in range(200)]
    assert decisions_a != [c.keep(ex) for _ in range(200)]


@pytest.mark.parametrize("rate", [-0.01, 1.01, math.nan])
def test_invalid_rates(rate: float) -> None:
    with pytest.raises(ValueError, match="sample rate must be within"):
        Sampler(rate)


SECRETS = [
    ("Authorization", "Bearer tok-AUTHZ-9f8e7d"),
    ("Proxy-Authorization", "Basic cHJveHktU0VDUkVU"),
    ("Cookie", "session=COOKIE-5c4b3a"),
    ("Set-Cookie", "session=SETCOOKIE-1a2b3c; HttpOnly"),
    ("X-Api-Key", "APIKEY-0d1e2f"),
    ("api-key", "AZUREKEY-778899"),
]


def test_credentials_are_never_kept_even_when_allow_listed() -> None:
    names = [name for name, _ in SECRETS]
    kept = HeaderFilter([*names, "Content-Type", "X-Request-Id"])
    headers = [(name.upper(), value) for name, value in SECRETS] + [
        ("content-type", "application/json"),
        ("X-REQUEST-ID", "r1"),
        ("X-Other", "not listed"),
    ]
    assert kept(raw_headers(headers)) == [("content-type", "application/json"), ("x-request-id", "r1")]


def test_every_named_credential_is_in_the_redacted_set() -> None:
    assert {name.lower() for name, _ in SECRETS} <= ALWAYS_REDACTED_HEADERS


def test_settings_allow_list_cannot_reenable_credentials() -> None:
    settings = ProxySettings(header_allowlist=["Authorization", "Cookie", "Content-Type"])
    assert settings.writable_headers() == frozenset({"content-type"})


def test_repeated_headers_keep_the_last_value() -> None:
    assert HeaderFilter(["x-tag"])([(b"X-Tag", b"a"), (b"x-tag", b"b")]) == [("x-tag", "b")]


def test_the_filter_gives_the_same_answer_for_every_exchange_past_its_memory_of_names() -> None:
    kept = HeaderFilter(["Content-Type"])
    # more distinct names than the filter remembers verdicts for (names are the client's choice)
    junk = [(f"X-Junk-{i}".encode(), b"v") for i in range(3000)]
    for value in (b"a", b"b"):
        headers = [*junk, (b"Authorization", b"secret"), (b"CONTENT-TYPE", value), (b"x-junk-1", b"w")]
        assert kept(headers) == [("content-type", value.decode())]
    assert kept([(b"content-type", b"c"), (b"X-Junk-2999", b"v")]) == [("content-type", "c")]


def test_no_written_file_contains_a_secret_header_value(make_capturer: CapturerFactory, tmp_path: Path) -> None:
    allowed = (*tuple(name for name, _ in SECRETS), "user-agent", "content-type")
    capturer = make_capturer(allowed=allowed, keep_raw_bodies=True)
    marker = "MARKER-UA-31337"  # an allowed header value: proves the search can see header values
    headers = [*SECRETS, ("User-Agent", marker)]
    records = []
    for i, status in enumerate([200, 200, 500, 200]):
        rec = capturer.process(
            make_exchange(request_id=f"r{i}", status_code=status, request_headers=headers, response_headers=headers)
        )
        assert rec is not None
        records.append(rec)
    # the undecodable one keeps raw bodies: still nothing secret
    bad = capturer.process(make_exchange(request_id="r-bad", request_body=b"{", request_headers=headers))
    assert bad is not None
    records.append(bad)
    sink = FileSink(tmp_path / "data", compression="none")  # uncompressed, so a secret would show in the bytes
    sink.start()
    for batch in batching.to_batches(records):
        sink.write(batch)
    sink.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    blobs = b"".join(p.read_bytes() for p in files)
    assert marker.encode() in blobs
    for _, value in SECRETS:
        for token in {value, value.split("=", 1)[-1].split(";")[0], value.split(" ", 1)[-1]}:
            assert token.encode() not in blobs, token
