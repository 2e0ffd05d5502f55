"""The ``INFERTAP_*`` environment as a whole: which names exist, and one-line messages for settings that are wrong.

pydantic-settings reads the variables a model knows and ignores the rest, so a misspelled name
(``INFERTAP_OUTPUTDIR``) would leave its setting on the default without a word. :func:`check_environment` compares
every ``INFERTAP_*`` variable with the names of **all** the project's settings models, so one process refuses a
misspelling meant for any deployable (the sidecar's ``INFERTAP_*``, the sinks' ``INFERTAP_S3_*`` ...), and names the
closest valid one (:func:`difflib.get_close_matches`).

The models are found by convention, not by a list to keep up to date: every ``config.py`` or ``settings.py`` module
under ``infertap.logger`` and ``infertap.drift`` is imported and every ``pydantic_settings.BaseSettings`` subclass
defined in the project is collected (:func:`settings_models`); ``tests/unit/test_environment.py`` fails when a
settings model lives anywhere else.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from infertap.logger.errors import InfertapError

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

#: The common prefix of every variable the project reads.
PREFIX = "INFERTAP_"

#: ``INFERTAP_*`` variables read outside the settings models, with what reads them (docs/operations.md).
OTHER_ENV_NAMES: Mapping[str, str] = {
    "INFERTAP_DEBUG_GC": "infertap proxy: log every garbage-collector pause longer than 5 ms",
    "INFERTAP_MLSERVER_VENV": "infertap demo: MLServer's virtual environment (default .venv-mlserver)",
    "INFERTAP_KSERVE_VENV": "infertap demo: KServe's virtual environment (default .venv-kserve)",
    "INFERTAP_LLAMA_VENV": "the LLM example: llama-cpp-python's virtual environment (default .venv-llama)",
    "INFERTAP_LLM_MODELS": "the LLM example: folder of the locally made GGUF models",
}

#: Prefixes of variables no command reads: the test suite's real-service switches (``INFERTAP_TEST_KAFKA_BOOTSTRAP``).
IGNORED_PREFIXES: tuple[str, ...] = ("INFERTAP_TEST_",)

#: Packages whose ``config.py`` / ``settings.py`` modules hold settings models.
SETTINGS_PACKAGES: tuple[str, ...] = ("infertap.logger", "infertap.drift")
SETTINGS_MODULE_NAMES: frozenset[str] = frozenset({"config", "settings"})


class UnknownSettingError(ValueError):
    """``INFERTAP_*`` variables that no settings model and no command knows.

    Attributes:
        unknown: ``(name, closest valid name or None)`` for each, sorted by name.
    """

    def __init__(self, unknown: list[tuple[str, str | None]]) -> None:
        self.unknown = unknown
        parts = [f"{name} (did you mean {close}?)" if close else f"{name} (no similar name)" for name, close in unknown]
        super().__init__(
            f"unknown environment variable{'s' if len(parts) > 1 else ''} {', '.join(parts)}; "
            "every setting is listed in docs/operations.md"
        )


def _settings_modules() -> list[str]:
    """Dotted names of every ``config.py`` / ``settings.py`` module under :data:`SETTINGS_PACKAGES`."""
    names: list[str] = []
    for package in SETTINGS_PACKAGES:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            root = Path(location)
            for path in sorted(root.rglob("*.py")):
                rel = path.relative_to(root).with_suffix("")
                if rel.name in SETTINGS_MODULE_NAMES and (path.parent / "__init__.py").exists():
                    names.append(".".join([package, *rel.parts]))
    return names


def _subclasses(cls: type[BaseSettings]) -> Iterable[type[BaseSettings]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def settings_models() -> list[type[BaseSettings]]:
    """Every settings model of the project, sorted by qualified name.

    A settings module that cannot be imported (an optional extra not installed) is skipped with a debug line:
    its variables then count as unknown, which only matters in a process that could not use them anyway.
    """
    for module in _settings_modules():
        try:
            importlib.import_module(module)
        except ImportError as exc:  # pragma: no cover - every extra is installed where the tests run
            log.debug("settings module %s not importable: %s", module, exc)
    found = {m for m in _subclasses(BaseSettings) if m.__module__.startswith("infertap.")}
    return sorted(found, key=lambda m: f"{m.__module__}.{m.__qualname__}")


def env_prefix(model: type[BaseSettings]) -> str:
    """The environment prefix of ``model`` (``INFERTAP_S3_`` ...), upper case."""
    return str(model.model_config.get("env_prefix", "")).upper()


def env_names(model: type[BaseSettings]) -> dict[str, str]:
    """``{environment variable: field name}`` of ``model``; field aliases count as they are spelt."""
    prefix = env_prefix(model)
    names: dict[str, str] = {}
    for field_name, field in model.model_fields.items():
        names[f"{prefix}{field_name}".upper()] = field_name
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        if alias:
            names[alias.upper()] = field_name
    return names


def known_names(models: Iterable[type[BaseSettings]] | None = None) -> frozenset[str]:
    """Every ``INFERTAP_*`` name the project reads: the settings models' fields and :data:`OTHER_ENV_NAMES`."""
    found = set(OTHER_ENV_NAMES)
    for model in settings_models() if models is None else models:
        found.update(n for n in env_names(model) if n.startswith(PREFIX))
    return frozenset(found)


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name most similar to ``name`` (difflib ratio at least 0.6, compared without the prefix)."""
    by_suffix = {k.removeprefix(PREFIX): k for k in known}
    match = difflib.get_close_matches(name.upper().removeprefix(PREFIX), list(by_suffix), n=1, cutoff=0.6)
    return by_suffix[match[0]] if match else None


def check_environment(environ: Mapping[str, str], known: Iterable[str] | None = None) -> None:
    """Refuse ``INFERTAP_*`` variables nobody reads (compared case-insensitively, as pydantic-settings reads them).

    Args:
        environ: the process environment (``os.environ``).
        known: the valid names (default: :func:`known_names`).

    Raises:
        UnknownSettingError: with each unknown name and its closest valid name.
    """
    valid = known_names() if known is None else frozenset(k.upper() for k in known)
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(PREFIX)
        and not name.upper().startswith(IGNORED_PREFIXES)
        and name.upper() not in valid
    )
    if unknown:
        raise UnknownSettingError([(name, closest(name, valid)) for name in unknown])


def describe_validation_error(exc: ValidationError) -> str:
    """One line for a settings model's validation error, naming each variable as the user sets it.

    ``INFERTAP_SAMPLE_RATE: Input should be less than or equal to 1 (got '2.5'); INFERTAP_HTTP_SINK_URL: Field
    required``. The model is found by the error's title (the model's class name); for another title the field names
    are shown as they are.
    """
    models = {m.__name__: m for m in settings_models()}
    model = models.get(exc.title)
    prefix = env_prefix(model) if model is not None else ""
    parts = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"])
        name = f"{prefix}{field}".upper() if prefix and err["loc"] else field
        msg = str(err["msg"]).removeprefix("Value error, ")
        got = "" if err["type"] == "missing" else f" (got {_short(err['input'])})"
        parts.append(f"{name}: {msg}{got}")
    return "; ".join(parts)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_with_settings(
    command: str, model: type[SettingsT], flags: Mapping[str, Any], run: Callable[[SettingsT], int]
) -> int:
    """Build a deployable's settings from ``INFERTAP_*`` and its command-line flags, then run it.

    The one start-up path of every serving command (``infertap proxy``, ``collector``, ``webhook``): flags given
    as ``None`` (not on the command line) leave the environment's value; the others override it.

    Args:
        command: the subcommand's name, the first word of every error line (``infertap collector: ...``).
        model: the command's settings model.
        flags: setting name -> value from argparse (``None``: the flag was not given).
        run: serves with the settings and returns the process exit code.

    Returns:
        ``run``'s exit code, or 2 after one line on stderr (no traceback) when a setting is invalid
        (:func:`describe_validation_error`) or the command raises :class:`~infertap.logger.errors.InfertapError`
        while starting.
    """
    try:
        settings = model(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        print(f"infertap {command}: invalid settings: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    try:
        return run(settings)
    except InfertapError as exc:
        print(f"infertap {command}: {exc}", file=sys.stderr)
        return 2
