"""The ``infertap`` command line: subcommands from entry points, clear errors on bad settings."""

from __future__ import annotations

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
    assert "sample_rate" in err


def test_upstream_must_be_an_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy", "--upstream-url", "ftp://example"]) == 2
    assert "upstream_url must be an http(s) URL" in capsys.readouterr().err
