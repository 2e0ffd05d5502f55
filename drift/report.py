"""The HTML report of a drift verdict: the verdict's own tests, statistics, thresholds and decisions.

The report is a pure function of the verdict document (``docs/verdict-schema.md``): nothing is re-tested, so its
headline counts are the verdict's and no feature can be flagged that the verdict did not flag. Every tested feature
is listed, drifted first (then by name), with its test, statistic, score, threshold, decision, sample sizes and
reason, and a bar chart of the reference and current shares (the ``histogram`` of the feature entry). Rendered
with Jinja2 (autoescaped); one self-contained file, no script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import escape

from infertap.drift.errors import DriftError

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>infertap drift report: {{ model }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} .drift{color:#b00020} .ok{color:#1b5e20}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}
th{background:#f3f3f3;text-align:left} tr.drifted td{background:#fff3f3} .num{text-align:right}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em} dt{font-weight:600}
svg text{font-size:9px}
</style></head><body>
<h1>Drift report: {{ model }}{% if version %} (version {{ version }}){% endif %}</h1>
<p id="headline" class="{{ 'drift' if v.dataset_drift else 'ok' }}"><strong>{{ 'Dataset drift' if v.dataset_drift
 else 'No dataset drift' }}</strong>: {{ v.n_drifted }} of {{ v.n_features }} features drifted (share
 {{ '%.3f' % v.drifted_share }} {{ '>=' if v.dataset_drift else '<' }} {{ v.drift_share_threshold }}).</p>
<dl>
<dt>window</dt><dd>{{ v.window.start or 'open' }} to {{ v.window.end or 'open' }}, {{ v.window.records }} records</dd>
<dt>baseline</dt><dd>{{ v.baseline.id }} ({{ v.baseline.n_rows }} rows, {{ v.baseline.source }})</dd>
<dt>source</dt><dd>{{ v.source }}</dd>
<dt>correction</dt><dd>{{ v.correction }}</dd>
<dt>malformed records</dt><dd>{{ malformed.records }}{% if malformed.records %} (share {{ '%.4f' % malformed.share }};
 {{ malformed.request_ids | join(', ') }}){% endif %}</dd>
{% if v.missing_features %}<dt>not tested (no data)</dt><dd>{{ v.missing_features | join(', ') }}</dd>{% endif %}
<dt>generated</dt><dd>{{ v.generated_at }}</dd>
</dl>
<h2>Features</h2>
<table>
<tr><th>feature</th><th>where</th><th>test</th><th>statistic</th><th>score</th><th>threshold</th><th>decision</th>
<th>n reference</th><th>n current</th><th>non-finite</th><th>reason</th><th>reference vs current</th></tr>
{% for f in features %}
<tr class="{{ 'drifted' if f.drifted else '' }}">
<td>{{ f.name }}</td><td>{{ f.column }}{% if f.summary %}.{{ f.summary }}{% elif f.index is not none %}[{{ f.index
 }}]{% endif %}</td><td>{{ f.test }}</td><td class="num">{{ fmt(f.statistic) }}</td><td class="num">{{ fmt(f.score)
 }}</td><td class="num">{{ f.threshold }}</td><td class="{{ 'drift' if f.drifted else 'ok' }}">{{ 'drifted' if
 f.drifted else 'no drift' }}</td><td class="num">{{ f.n_reference }}</td><td class="num">{{ f.n_current }}</td>
<td class="num">{{ f.n_nonfinite }}</td><td>{{ f.reason }}</td><td>{{ bars(f.histogram) | safe }}</td></tr>
{% endfor %}
</table>
<p>Tests and thresholds: docs/drift.md; document fields: docs/verdict-schema.md.</p>
</body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.4g}"


def _bars(hist: dict[str, Any] | None) -> str:
    """An inline SVG of reference (grey) and current (blue) shares per bucket; labels in ``<title>``."""
    if not hist or not hist.get("labels"):
        return ""
    ref, cur = hist["reference"], hist["current"]
    top = max([*ref, *cur, 1e-12])
    n = len(hist["labels"])
    w, h = 8, 40
    parts = [f'<svg width="{n * (2 * w + 2)}" height="{h}" role="img">']
    for i, label in enumerate(hist["labels"]):
        x = i * (2 * w + 2)
        for j, (share, colour) in enumerate(((ref[i], "#9e9e9e"), (cur[i], "#1565c0"))):
            bh = h * share / top
            side = "reference" if j == 0 else "current"
            title = escape(f"{label}: {side} {share:.3%}")
            parts.append(
                f'<rect x="{x + j * w}" y="{h - bh:.2f}" width="{w - 1}" height="{bh:.2f}" fill="{colour}">'
                f"<title>{title}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def render_report(verdict: dict[str, Any]) -> str:
    """The HTML report of a drift verdict document (``kind: "drift"``).

    Raises:
        DriftError: not a drift verdict.
    """
    if verdict.get("kind") != "drift" or "features" not in verdict:
        raise DriftError("an HTML report is made from a drift verdict (kind 'drift')")
    features = sorted(verdict["features"], key=lambda f: (not f["drifted"], f["name"]))
    model = verdict.get("model", {})
    malformed = verdict.get("malformed") or {"records": 0, "share": 0.0, "request_ids": []}
    return _ENV.from_string(_TEMPLATE).render(
        v=verdict,
        model=model.get("name", ""),
        version=model.get("version"),
        features=features,
        malformed=malformed,
        fmt=_fmt,
        bars=_bars,
    )


def write_report(verdict: dict[str, Any], path: Path) -> Path:
    """Write :func:`render_report` of ``verdict`` to ``path`` (parents created); returns ``path``.

    Raises:
        DriftError: not a drift verdict, or the file cannot be written.
    """
    html = render_report(verdict)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(html, encoding="utf-8")
    except OSError as exc:
        raise DriftError(f"cannot write the report {path}: {exc}") from exc
    return Path(path)
