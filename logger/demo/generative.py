"""The generative demo (``make demo-generative``): LLM traffic through sidecars, read back and compared.

A real OpenAI-compatible server (llama.cpp with the locally made tiny Llama and all-MiniLM-L6-v2,
:mod:`infertap.demo.llama`) behind two sidecars, as a KServe canary rollout would have it: the stable revision
and a canary whose clients ask for different generation settings (fewer tokens, a higher temperature), so it
answers shorter and stops early. The ``openai`` client sends chat and completion calls, streamed and not, and
embeddings; the client keeps what it received, delta by delta. After a SIGTERM drain, the captured Parquet is read
back and every reassembled completion, every delta and every embedding vector is compared with what the client
got. The ``generative`` section of ``summary.json`` has the counts, the tokens, time to first token by revision,
the result of every comparison, and the canary checks of :mod:`infertap.drift.generative` (the canary is flagged
with its reason: it answers shorter) with the embedding-vector MMD test between the two revisions.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infertap.demo import predictors
from infertap.demo.llama import CHAT_MODEL, EMBEDDING_MODEL, start_llama
from infertap.drift import generative as gen_drift
from infertap.logger import record

STABLE, CANARY = "llm-predictor-00001", "llm-predictor-00002"
#: Generation settings of each arm: the canary's clients ask for shorter, hotter answers.
SETTINGS: dict[str, dict[str, float]] = {
    STABLE: {"max_tokens": 16, "temperature": 0.7},
    CANARY: {"max_tokens": 5, "temperature": 1.2},
}
PROMPTS = [
    "Explain what a sidecar proxy does.",
    "Write a haiku about observability.",
    "List three uses of embeddings.",
    "Why do streams need time to first token?",
    "Summarise the Open Inference Protocol.",
    "What is a canary rollout?",
]


def _traffic(port: int, revision: str, rounds: int) -> dict[str, dict[str, Any]]:
    """Send one arm's calls; what the client received, by request id."""
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="demo-key", max_retries=0)
    max_tokens, temperature = int(SETTINGS[revision]["max_tokens"]), SETTINGS[revision]["temperature"]
    got: dict[str, dict[str, Any]] = {}
    for r in range(rounds):
        for i, prompt in enumerate(PROMPTS):
            rid = uuid.uuid4().hex  # llama.cpp's server rejects an X-Request-Id that is not a UUID
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
            if i % 3 == 0:  # streamed chat
                stream = client.chat.completions.create(
                    model=CHAT_MODEL, messages=messages, stream=True, seed=r * 10 + i, max_tokens=max_tokens,
                    temperature=temperature, extra_headers={"X-Request-Id": rid},
                )  # fmt: skip
                deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
                got[rid] = {"kind": "chat-stream", "deltas": deltas, "text": "".join(deltas)}
            elif i % 3 == 1:  # whole chat answer
                answer = client.chat.completions.create(
                    model=CHAT_MODEL, messages=messages, seed=r * 10 + i, max_tokens=max_tokens,
                    temperature=temperature, extra_headers={"X-Request-Id": rid},
                )  # fmt: skip
                got[rid] = {"kind": "chat", "text": answer.choices[0].message.content or ""}
            else:  # streamed completion
                comp = client.completions.create(
                    model=CHAT_MODEL, prompt=prompt, stream=True, seed=r * 10 + i, max_tokens=max_tokens,
                    temperature=temperature, extra_headers={"X-Request-Id": rid},
                )  # fmt: skip
                deltas = [c.choices[0].text for c in comp if c.choices and c.choices[0].text]
                got[rid] = {"kind": "completion-stream", "deltas": deltas, "text": "".join(deltas)}
        rid = uuid.uuid4().hex
        emb = client.embeddings.create(model=EMBEDDING_MODEL, input=PROMPTS[:3], extra_headers={"X-Request-Id": rid})
        got[rid] = {"kind": "embedding", "vectors": np.array([d.embedding for d in emb.data], dtype=np.float32)}
    client.close()
    return got


def _read(data_dir: Path) -> pa.Table:
    tables = [pq.read_table(f) for f in sorted(data_dir.rglob("*.parquet"))]
    return pa.concat_tables(tables, promote_options="default")


def _pct_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values) * 1000.0, q)), 2) if values else None


def _compare(
    rows: list[dict[str, Any]], vectors: dict[str, np.ndarray[Any, Any]], sent: dict[str, Any]
) -> dict[str, Any]:
    """Every captured call against what its client received."""
    by_id = {r["request_id"]: r for r in rows}
    texts_equal = deltas_equal = embeddings_equal = 0
    texts = deltas = embeddings = 0
    mismatches: list[str] = []
    for rid, want in sent.items():
        row = by_id.get(rid)
        if row is None:
            mismatches.append(f"{rid}: not captured")
            continue
        if want["kind"] == "embedding":
            embeddings += 1
            if rid in vectors and np.array_equal(vectors[rid], want["vectors"]):
                embeddings_equal += 1
            else:
                mismatches.append(f"{rid}: embedding vectors differ")
            continue
        texts += 1
        if row["gen_choices"] and row["gen_choices"][0]["text"] == want["text"]:
            texts_equal += 1
        else:
            mismatches.append(f"{rid}: reassembled text differs")
        if "deltas" in want:
            deltas += 1
            if [d["text"] for d in row["gen_deltas"] or []] == want["deltas"]:
                deltas_equal += 1
            else:
                mismatches.append(f"{rid}: deltas differ")
    return {
        "completions_equal_to_client": f"{texts_equal}/{texts}",
        "streams_equal_delta_by_delta": f"{deltas_equal}/{deltas}",
        "embeddings_equal_to_client": f"{embeddings_equal}/{embeddings}",
        "all_equal": not mismatches,
        "mismatches": mismatches[:20],
    }


def _by_revision(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for revision in (STABLE, CANARY):
        mine = [r for r in rows if r["revision"] == revision and r["gen_api"] in ("chat", "completion")]
        ttft = [r["gen_ttft_s"] for r in mine if r["gen_ttft_s"] is not None]
        reported = [r for r in mine if r["gen_completion_tokens"] is not None]
        out[revision] = {
            "endpoint": mine[0]["endpoint"] if mine else None,
            "settings": SETTINGS[revision],
            "calls": len(mine),
            "streams": sum(1 for r in mine if r["gen_stream"]),
            "prompt_tokens_reported": sum(r["gen_prompt_tokens"] or 0 for r in reported),
            "completion_tokens_reported": sum(r["gen_completion_tokens"] for r in reported),
            "calls_with_reported_tokens": len(reported),
            "completion_chars_mean": round(float(np.mean([r["gen_completion_chars"] for r in mine])), 1)
            if mine
            else None,
            "time_to_first_token_p50_ms": _pct_ms(ttft, 50),
            "time_to_first_token_p99_ms": _pct_ms(ttft, 99),
            "finish_reasons": dict(Counter(r["gen_finish_reason"] or "none" for r in mine)),
        }
    return out


def run_generative(output: Path, *, rounds: int = 3) -> dict[str, Any]:
    """Run the generative demo into ``output`` (emptied first); returns the summary, also ``output/summary.json``.

    Raises:
        FileNotFoundError: no llama virtual environment (``make llm``).
        RuntimeError: the server or a sidecar did not start.
    """
    t_start = time.monotonic()
    if output.exists():
        shutil.rmtree(output)
    data_dir, log_dir = output / "data", output / "logs"
    data_dir.mkdir(parents=True)
    sent: dict[str, Any] = {}
    with ExitStack() as stack:
        llama = start_llama(log_dir)
        stack.callback(llama.process.stop)
        cars = {}
        for revision, endpoint in ((STABLE, "default"), (CANARY, "canary")):
            env = {
                **predictors.sidecar_identity("llm", revision, endpoint),
                "INFERTAP_UPSTREAM_READY_PATH": "/v1/models",
            }
            car = predictors.start_sidecar(llama, f"{revision}-0", data_dir, log_dir, env)
            stack.callback(car.process.stop)
            cars[revision] = car
        for revision, car in cars.items():
            sent.update(_traffic(car.port, revision, rounds))
        exit_codes = {car.process.name: car.process.stop() for car in cars.values()}
    table = _read(data_dir)
    vectors: dict[str, np.ndarray[Any, Any]] = {}
    ids = table.column("request_id").to_pylist()
    if "output.embedding" in table.column_names:
        col = table.column("output.embedding")
        for i, rid in enumerate(ids):
            if col[i].is_valid:
                vectors[rid] = record.instances(col.slice(i, 1))
    rows = table.drop_columns([c for c in table.column_names if c.startswith(("input.", "output."))]).to_pylist()
    revision = table.column("revision")
    arms = {rev: table.filter(pc.equal(revision, rev)) for rev in (STABLE, CANARY)}
    checks = gen_drift.canary_checks(arms[STABLE], arms[CANARY])
    emb = {rev: gen_drift.embeddings(t) for rev, t in arms.items()}
    embedding_test = (
        gen_drift.mmd_test(emb[STABLE], emb[CANARY]).to_json()
        if min(len(e) for e in emb.values()) >= 2
        else {"skipped": "fewer than two vectors a side"}
    )
    generative = {
        "requests_sent": len(sent),
        "records_captured": len(rows),
        "protocols": dict(Counter(r["protocol"] for r in rows)),
        "apis": dict(Counter(r["gen_api"] for r in rows)),
        "by_revision": _by_revision(rows),
        "embedding_dimensions": int(next(iter(vectors.values())).shape[1]) if vectors else None,
        "canary": {
            "flagged": [f"{c.name}: {c.reason}" for c in checks if not c.passed],
            "checks": [c.to_json() for c in checks],
            "embedding_drift_stable_vs_canary": embedding_test,
        },
        **_compare(rows, vectors, sent),
    }
    summary = {
        "generative": generative,
        "sidecar_exit_codes": exit_codes,
        "duration_s": round(time.monotonic() - t_start, 1),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
