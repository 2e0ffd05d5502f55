"""The generative columns of a record batch (:data:`infertap.logger.record.GENERATIVE_FIELDS`) from decoded calls.

One builder per column, keyed by column name and checked against the schema's list at import, so a column added to
the schema without a builder (or the reverse) fails every import. Rows without a call (``None``) are null in every
column. With ``Generation.text_redacted`` the text columns are null (lengths, counts and timings stay).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from infertap.logger.genai.model import Generation
from infertap.logger.genai.slices import Slicer

_Getter = Callable[[Generation], Any]


def _text(get: Callable[[Generation], Any]) -> _Getter:
    """A getter whose value is null when the call's text is redacted."""
    return lambda g: None if g.text_redacted else get(g)


def _timing(name: str) -> _Getter:
    def get(g: Generation) -> Any:
        return None if g.timing is None else getattr(g.timing, name)

    return get


def _choices(g: Generation) -> list[dict[str, Any]]:
    hide = g.text_redacted
    return [
        {
            "index": c.index, "role": c.role, "text": None if hide else c.text, "finish_reason": c.finish_reason,
            "tool_calls": [
                {"id": t.id, "type": t.type, "name": t.name, "arguments": None if hide else t.arguments}
                for t in c.tool_calls
            ],
        }
        for c in g.choices
    ]  # fmt: skip


def _messages(g: Generation) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": None if g.text_redacted else m.content} for m in g.messages]


def _deltas(g: Generation) -> list[dict[str, Any]]:
    hide = g.text_redacted
    return [
        {"choice": d.choice, "text": None if hide else d.text, "at_s": None if d.at_s is None else d.at_s}
        for d in g.deltas
    ]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


BUILDERS: dict[str, _Getter] = {
    "gen_api": lambda g: g.api,
    "gen_stream": lambda g: g.stream,
    "gen_text_redacted": lambda g: g.text_redacted,
    "gen_messages": _messages,
    "gen_prompts": _text(lambda g: g.prompts),
    "gen_prompt_chars": lambda g: g.prompt_chars(),
    "gen_max_tokens": lambda g: g.params.max_tokens,
    "gen_temperature": lambda g: _finite(g.params.temperature),
    "gen_top_p": lambda g: _finite(g.params.top_p),
    "gen_stop": _text(lambda g: g.params.stop),
    "gen_n": lambda g: g.params.n,
    "gen_seed": lambda g: g.params.seed,
    "gen_tools": lambda g: g.params.tools,
    "gen_parameters": lambda g: g.params.other,
    "gen_response_id": lambda g: g.response_id or None,
    "gen_choices": _choices,
    "gen_finish_reason": lambda g: g.choices[0].finish_reason if g.choices else None,
    "gen_completion_chars": lambda g: g.completion_chars(),
    "gen_prompt_tokens": lambda g: g.usage.prompt_tokens,
    "gen_completion_tokens": lambda g: g.usage.completion_tokens,
    "gen_total_tokens": lambda g: g.usage.total_tokens,
    "gen_events": lambda g: g.events if g.stream else None,
    "gen_deltas": lambda g: _deltas(g) if g.stream else None,
    "gen_ttft_s": _timing("ttft_s"),
    "gen_gap_count": lambda g: None if g.timing is None else g.timing.gap_count,
    "gen_gap_mean_s": _timing("gap_mean_s"),
    "gen_gap_p50_s": _timing("gap_p50_s"),
    "gen_gap_p99_s": _timing("gap_p99_s"),
    "gen_gap_max_s": _timing("gap_max_s"),
    "gen_generation_s": _timing("generation_s"),
    "gen_output_tokens_per_s": _timing("output_tokens_per_s"),
}


def check_builders(fields: Sequence[pa.Field]) -> None:
    """Check that every generative column has a builder and every builder a column.

    Raises:
        ValueError: they disagree.
    """
    names = [f.name for f in fields]
    if set(names) != set(BUILDERS):
        raise ValueError(f"generative columns and builders disagree: {sorted(set(names) ^ set(BUILDERS))}")


#: Calls converted between two chances to release the GIL (:class:`~infertap.logger.genai.slices.Slicer`).
ROWS_PER_SLICE = 32


def arrays(fields: Sequence[pa.Field], calls: Sequence[Generation | None]) -> list[pa.Array]:
    """One array per field of ``fields`` (the schema's generative columns), one row per call.

    Built :data:`ROWS_PER_SLICE` calls at a time, releasing the GIL between pieces once a slice of work has run
    (:mod:`infertap.logger.genai.slices`), so a large batch never holds it in one piece.
    """
    out: list[pa.Array] = []
    if all(c is None for c in calls):
        return [pa.nulls(len(calls), f.type) for f in fields]
    slicer = Slicer()
    for f in fields:
        get = BUILDERS[f.name]
        parts = []
        for lo in range(0, len(calls), ROWS_PER_SLICE):
            parts.append(pa.array([None if c is None else get(c) for c in calls[lo : lo + ROWS_PER_SLICE]], f.type))
            slicer.tick()
        out.append(parts[0] if len(parts) == 1 else pa.concat_arrays(parts))
    return out
