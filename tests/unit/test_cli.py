"""The ``infertap`` command line: subcommands from entry points, clear errors on bad settings."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from infertap.logger.cli import build_parser, main


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"proxy", "demo", "drift"} <= set(sub.choices)  # type: ignore[arg-type]


def test_invalid_proxy_settings_exit_2_with_the_field_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERTAP_SAMPLE_RATE", "2.5")
    assert main(["proxy"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "INFERTAP_SAMPLE_RATE" in err


def test_upstream_must_be_an_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy", "--upstream-url", "ftp://example"]) == 2
    assert "upstream_url must be an http(s) URL" in capsys.readouterr().err


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_parsers(child))
    return found


def test_help_texts_are_plain_text() -> None:
    """argparse prints help verbatim: reST/Sphinx markup (``x``, :func:`x`) shows up raw in a terminal."""
    markup = re.compile(r"``|:[a-z]+:`")
    parsers = _parsers(build_parser())
    assert len(parsers) > 3
    for p in parsers:
        text = p.format_help()
        assert not markup.search(text), f"{p.prog} --help shows markup:\n{text}"


def test_an_option_value_before_the_command_does_not_load_the_other_commands() -> None:
    # `infertap --log-level WARNING proxy` names proxy: the sidecar must not load the drift job's scipy and pandas
    code = (
        "import sys\n"
        "from infertap.logger.cli import main\n"
        "try:\n"
        "    main(['--log-level', 'WARNING', 'proxy', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('infertap.drift', 'scipy', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
