"""Field rules for redaction inside JSON documents: named fields anywhere, or simple paths from the root.

A rule is either

- a **field name** (no ``.``, ``[`` or ``$``): every object member of that name, at any depth, e.g. ``api_key``;
- a **path** from the document root, in the dotted subset of JSONPath (Goessner's notation, RFC 9535): an optional
  ``$`` or ``$.``, then members separated by ``.``, each a name or ``*`` (any member), each followed by any number of
  ``[*]`` (every element) or ``[N]`` (element N, from 0), e.g. ``parameters.api_key``,
  ``$.inputs[*].parameters.user``, ``$.instances[0].*``.

Names compare case-insensitively (``API_KEY`` matches ``api_key``): a secret spelled another way is still a secret.
Filters, slices, recursive descent and quoted names are not supported; :func:`parse` rejects them with a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ANY = "*"  #: a member step matching every member, or (as an index step) every element
_NAME = re.compile(r"[^.\[\]$*]+|\*")
_INDEX = re.compile(r"\[(\*|[0-9]+)\]")


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One parsed rule.

    Attributes:
        text: the rule as written.
        name: the lower-case field name of a named-field rule, ``""`` for a path.
        steps: the steps of a path from the root (``str``: a lower-case member name or :data:`ANY`; ``int``: a
            list index; ``None``: every element of a list); empty for a named-field rule.
    """

    text: str
    name: str
    steps: tuple[str | int | None, ...]

    @property
    def last_name(self) -> str:
        """The field name a rule ends with, indexes after it ignored (``""`` when that is a wildcard)."""
        if self.name:
            return self.name
        last = next(s for s in reversed(self.steps) if isinstance(s, str))  # a path starts with a member step
        return "" if last == ANY else last


def parse(rule: str) -> FieldRule:
    """Parse one rule (see the module docs).

    Raises:
        ValueError: an empty rule or syntax outside the supported subset, naming the rule and the position.
    """
    text = rule.strip()
    if not text:
        raise ValueError("an empty JSON field rule")
    if not any(c in text for c in ".[$"):
        if text == ANY:
            raise ValueError("a JSON field rule '*' would redact everything; name a field")
        return FieldRule(text, text.lower(), ())
    rest = text[1:] if text.startswith("$") else text
    rest = rest[1:] if rest.startswith(".") else rest
    steps: list[str | int | None] = []
    pos = 0
    while True:
        m = _NAME.match(rest, pos)
        if m is None:
            raise ValueError(f"JSON field rule {text!r}: expected a member name or '*' at {rest[pos:]!r}")
        steps.append(m.group().lower())
        pos = m.end()
        while (idx := _INDEX.match(rest, pos)) is not None:
            steps.append(None if idx.group(1) == ANY else int(idx.group(1)))
            pos = idx.end()
        if pos == len(rest):
            return FieldRule(text, "", tuple(steps))
        if rest[pos] != ".":
            raise ValueError(f"JSON field rule {text!r}: unsupported syntax at {rest[pos:]!r}")
        pos += 1


def redact(doc: Any, rules: tuple[FieldRule, ...], replacement: str) -> int:
    """Replace, in place, the value of every member of ``doc`` that a rule selects with ``replacement``.

    Args:
        doc: a parsed JSON document (dicts, lists, scalars), changed in place.
        rules: parsed rules.
        replacement: the value written instead.

    Returns:
        How many values were replaced.
    """
    names = frozenset(r.name for r in rules if r.name)
    count = _redact_names(doc, names, replacement) if names else 0
    for rule in rules:
        if rule.steps:
            count += _redact_path(doc, rule.steps, replacement)
    return count


def _redact_names(node: Any, names: frozenset[str], replacement: str) -> int:
    count = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key.lower() in names:
                node[key] = replacement
                count += 1
            else:
                count += _redact_names(value, names, replacement)
    elif isinstance(node, list):
        for item in node:
            count += _redact_names(item, names, replacement)
    return count


def _redact_path(node: Any, steps: tuple[str | int | None, ...], replacement: str) -> int:
    step, rest = steps[0], steps[1:]
    if isinstance(step, str):
        if not isinstance(node, dict):
            return 0
        keys = [k for k in node if step == ANY or k.lower() == step]
        if not rest:
            for k in keys:
                node[k] = replacement
            return len(keys)
        return sum(_redact_path(node[k], rest, replacement) for k in keys)
    if not isinstance(node, list):
        return 0
    indices = range(len(node)) if step is None else [step] if step < len(node) else []
    if not rest:
        for i in indices:
            node[i] = replacement
        return len(indices)
    return sum(_redact_path(node[i], rest, replacement) for i in indices)
