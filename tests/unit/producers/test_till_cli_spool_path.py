"""``etims-relay till status|flush`` on a path with no spool: an error, never a new empty spool.

A support engineer who mistypes the path must not be told "nothing waiting" about a till that
has sales stuck in its real spool.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from etims_relay.cli import app
from producers.till.spool import Spool


def _says(output: str, text: str) -> bool:
    """Whether ``text`` is in ``output`` whatever line breaks the terminal width added."""
    return "".join(text.split()) in "".join(output.split())


def test_status_of_a_mistyped_spool_path_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "tills" / "till-03.spoool"
    result = CliRunner().invoke(app, ["till", "status", "--spool", str(missing)])
    assert result.exit_code == 2
    assert _says(result.output, f"no spool at {missing}")
    assert _says(result.output, "--create")
    assert not missing.exists()
    assert not missing.parent.exists()


def test_flush_of_a_mistyped_spool_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.spool"
    args = ["till", "flush", "--spool", str(missing), "--url", "http://127.0.0.1:9", "--key", "k"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert _says(result.output, "no spool at")
    assert not missing.exists()


def test_create_starts_an_empty_spool_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "new.spool"
    result = CliRunner().invoke(app, ["till", "status", "--spool", str(path), "--create"])
    assert result.exit_code == 0, result.output
    assert path.is_file()


def test_status_of_an_existing_spool_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "till.spool"
    Spool(path).close()  # the till itself creates its spool
    result = CliRunner().invoke(app, ["till", "status", "--spool", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert '"counts"' in result.output
