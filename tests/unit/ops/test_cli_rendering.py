"""Stored strings reach an operator's terminal as text: control sequences escaped, rich markup
not interpreted, multi-line notices kept multi-line."""

from __future__ import annotations

import pytest

from etims_relay.cli.common import fail, safe, safe_block


def test_safe_escapes_control_sequences() -> None:
    assert safe("k\x1b[2J\r\nx\x07") == "k\\x1b[2J\\r\\nx\\x07"
    assert safe("duka ç €") == "duka ç €"


def test_safe_block_keeps_line_breaks_only() -> None:
    assert safe_block("line 1\nline\x1b[31m 2") == "line 1\nline\\x1b[31m 2"


def test_an_error_quoting_a_stored_key_prints_it_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exit_ = fail("no job with key '[bold red]k[/bold red]\x1b]0;owned\x07'")
    assert exit_.exit_code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "\x1b" not in err and "\x07" not in err
    assert "error: no job with key '[bold red]k[/bold red]\\x1b]0;owned\\x07'" in err
