"""The Serving dashboard's generative (LLM) queries, evaluated against a real Prometheus that scraped a sidecar in
front of a real llama.cpp OpenAI-compatible server (``make llm``) under streamed and whole chat and completion
calls: each returns data."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from openai import OpenAI

from infertap.demo.llama import CHAT_MODEL, start_llama
from infertap.demo.predictors import PROJECT_ROOT, start_sidecar
from tests.integration.observability.components import PrometheusAPI, Target, poll, start_prometheus
from tests.integration.observability.test_dashboard_queries import expr_for_prometheus, finite, targets

pytestmark = pytest.mark.integration

REVISION = "tiny-llama-predictor-00001"


def _calls(client: OpenAI, n: int) -> None:
    """``n`` rounds of a streamed chat, a streamed completion and a whole chat (which reports token usage)."""
    for i in range(n):
        stream = client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": f"Count to {i + 3}."}], max_tokens=8, stream=True
        )
        assert [c for c in stream]
        stream = client.completions.create(model=CHAT_MODEL, prompt="def main", max_tokens=8, stream=True)
        assert [c for c in stream]
        whole = client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=6
        )
        assert whole.usage is not None


@pytest.fixture(scope="module")
def llm_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusAPI]:
    work = tmp_path_factory.mktemp("genai-observed")
    subprocess.run(["make", "-s", "llm"], cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=1500)
    llama = start_llama(work / "logs")
    try:
        car = start_sidecar(
            llama,
            "llm-0",
            work / "data",
            work / "logs",
            {
                "INFERTAP_REVISION": REVISION,
                "INFERTAP_FLUSH_INTERVAL_S": "1",
                "INFERTAP_UPSTREAM_READY_PATH": "/v1/models",
            },
        )
        try:
            prom_server = start_prometheus(work, [Target(f"127.0.0.1:{car.admin_port}", {"pod": "llm-0"})])
            try:
                prom = PrometheusAPI(prom_server.url)
                poll(lambda: prom.query('up{pod="llm-0"} == 1'), 60, "the first scrape of the sidecar")
                client = OpenAI(base_url=f"{car.url}/v1", api_key="unused", timeout=60, max_retries=0)
                # the generative series appear with the first calls: rate() counts the calls after that scrape
                _calls(client, 1)
                poll(
                    lambda: (
                        prom.query("infertap_genai_inter_token_latency_seconds_count")
                        and prom.query("infertap_genai_generation_tokens_total")
                    ),
                    60,
                    "the first calls' series scraped",
                )
                _calls(client, 3)
                # rate() needs two samples of each series after the increase: wait until every kind has one
                poll(
                    lambda: all(
                        prom.query(f"sum(rate({m}[4m])) > 0")
                        for m in (
                            "infertap_genai_generation_tokens_total",
                            "infertap_genai_prompt_tokens_total",
                            "infertap_genai_requests_total",
                            "infertap_genai_inter_token_latency_seconds_count",
                            "infertap_genai_time_to_first_token_seconds_count",
                        )
                    ),
                    60,
                    "the later calls scraped",
                )
                yield prom
            finally:
                prom_server.process.stop()
        finally:
            car.process.stop()
    finally:
        llama.process.stop()


GENAI_TARGETS = targets(genai=True)


def test_the_serving_dashboard_has_generative_panels() -> None:
    assert {uid for uid, _, _ in GENAI_TARGETS} == {"infertap-serving"}
    assert len(GENAI_TARGETS) >= 6


@pytest.mark.parametrize(("uid", "panel", "expr"), GENAI_TARGETS, ids=[f"{u}:{p}" for u, p, _ in GENAI_TARGETS])
def test_generative_panel_query_returns_data(llm_prometheus: PrometheusAPI, uid: str, panel: str, expr: str) -> None:
    result = llm_prometheus.query(expr_for_prometheus(expr))
    assert result, f"{uid} / {panel}: no series for {expr_for_prometheus(expr)}"
    assert finite(result), f"{uid} / {panel}: only NaN/Inf values: {result}"
