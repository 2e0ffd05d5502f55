"""The INFERTAP_* environment: misspelled names refused with the closest valid one, one-line errors, lists."""

from __future__ import annotations

import importlib
import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, NoDecode

from infertap.logger import environment
from infertap.logger.cli import main
from infertap.logger.config import ProxySettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("wrong", "meant"),
    [
        ("INFERTAP_UPSTREAM", "INFERTAP_UPSTREAM_URL"),
        ("INFERTAP_OUTPUTDIR", "INFERTAP_OUTPUT_DIR"),
        ("INFERTAP_S3_BUCKETS", "INFERTAP_S3_BUCKET"),
        ("INFERTAP_KAFKA_BOOTSTRAP", "INFERTAP_KAFKA_BOOTSTRAP_SERVERS"),
        ("INFERTAP_SPOOL_DIRECTORY", "INFERTAP_SPOOL_DIR"),
        ("infertap_sample_rat", "INFERTAP_SAMPLE_RATE"),
    ],
)
def test_a_misspelled_variable_is_refused_naming_the_closest_valid_one(
    wrong: str, meant: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(wrong, "x")
    monkeypatch.setenv("INFERTAP_SAMPLE_RATE", "2.5")  # without the check, the proxy stops here instead of serving
    assert main(["proxy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{wrong} (did you mean {meant}?)" in err


def test_every_command_refuses_unknown_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERTAP_ZZZ", "1")
    code = main(["drift", "baseline", "-o", str(tmp_path / "b.json"), "--model", "m", str(tmp_path / "none.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "infertap drift: unknown environment variable INFERTAP_ZZZ (no similar name); "
        "every setting is listed in docs/operations.md"
    )
    assert not (tmp_path / "b.json").exists()


def test_every_known_name_and_the_test_switches_are_accepted() -> None:
    env = {name: "x" for name in environment.known_names()}
    env["INFERTAP_TEST_KAFKA_BOOTSTRAP"] = "127.0.0.1:9092"
    env["PATH"] = "/usr/bin"
    environment.check_environment(env)
    assert {"INFERTAP_UPSTREAM_URL", "INFERTAP_S3_BUCKET", "INFERTAP_KAFKA_TOPIC", "INFERTAP_HTTP_SINK_URL"} <= set(env)


def _project_modules() -> list[str]:
    names = []
    for package, folder in (("infertap.logger", "logger"), ("infertap.drift", "drift")):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            if rel.parts[0] == "demo" and package == "infertap.logger":
                continue  # installed as infertap.demo; it holds no settings
            parts = [p for p in rel.parts if p != "__init__"]
            names.append(".".join([package, *parts]))
    return names


def test_every_settings_model_of_the_project_is_found() -> None:
    """A settings model outside a config.py / settings.py module would escape the misspelling check."""
    for module in _project_modules():
        importlib.import_module(module)
    defined: set[type[BaseSettings]] = set()
    stack = list(BaseSettings.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("infertap."):
            defined.add(cls)
    found = set(environment.settings_models())
    assert defined == found, f"settings models outside config.py / settings.py: {defined - found}"
    assert ProxySettings in found
    assert len(found) >= 5


def test_every_variable_read_outside_the_models_is_known() -> None:
    """``os.environ.get("INFERTAP_X")`` in the code must be listed in OTHER_ENV_NAMES, or the check refuses it."""
    read = set()
    pattern = re.compile(r"""environ(?:\.get\(|\[)\s*["'](INFERTAP_[A-Z0-9_]+)["']""")
    for folder in ("logger", "drift"):
        for path in (ROOT / folder).rglob("*.py"):
            read.update(pattern.findall(path.read_text()))
    assert read, "the scan found nothing: the pattern is broken"
    assert read <= environment.known_names(), read - environment.known_names()


def test_every_list_setting_takes_comma_separated_text() -> None:
    """pydantic-settings alone reads list settings as JSON only; every model's lists use config.CommaList."""
    lists = 0
    for model in environment.settings_models():
        for name, field in model.model_fields.items():
            if typing.get_origin(field.annotation) is list:
                lists += 1
                assert any(isinstance(m, NoDecode) or m is NoDecode for m in field.metadata), (
                    f"{model.__name__}.{name}: annotate it as infertap.logger.config.CommaList"
                )
    assert lists >= 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x-foo,x-bar", ["x-foo", "x-bar"]),
        (" X-Foo , x-bar ,", ["x-foo", "x-bar"]),
        ('["x-foo", "x-bar"]', ["x-foo", "x-bar"]),
        ("", []),
    ],
)
def test_list_settings_from_the_environment(value: str, expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERTAP_HEADER_ALLOWLIST", value)
    assert ProxySettings().header_allowlist == expected


def test_invalid_values_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERTAP_SAMPLE_RATE", "2.5")
    monkeypatch.setenv("INFERTAP_HEADER_ALLOWLIST", "[not json")
    assert main(["proxy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "INFERTAP_SAMPLE_RATE: Input should be less than or equal to 1 (got '2.5')" in err
    assert "INFERTAP_HEADER_ALLOWLIST: not a JSON array" in err


def test_validation_errors_of_sink_settings_name_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from infertap.logger.sinks.settings import HttpSinkSettings

    with pytest.raises(ValidationError) as info:
        HttpSinkSettings()
    assert environment.describe_validation_error(info.value) == "INFERTAP_HTTP_SINK_URL: Field required"
