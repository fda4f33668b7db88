"""The command's shape: help with an example everywhere, exit codes, JSON, progress,
completion, and nothing heavy imported until a command runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from app.cli import main
from app.cli.common import CliError
from app.cli.progress import progress
from app.cli.root import build, command_for
from geo.demo_city import demo_grids
from geo.grids import GridIndex


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRIDFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GRIDFLOW_DB__URL", raising=False)
    monkeypatch.delenv("GRIDFLOW_ENV", raising=False)
    return tmp_path / "data"


def _leaves(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    children = getattr(command, "commands", None)
    if children is None:
        return [path]
    return [leaf for name, c in children.items() for leaf in _leaves(c, (*path, name))]


def leaves() -> list[tuple[str, ...]]:
    return _leaves(typer.main.get_command(build()))


def test_the_tree_has_every_command_of_before_and_the_new_ones() -> None:
    names = {" ".join(p) for p in leaves()}
    assert names == {
        "serve", "api", "dispatcher", "doctor", "demo", "token issue", "device create",
        "device rotate", "device revoke", "device list", "db upgrade", "grids import",
        "grids validate", "policies load", "policies dump", "audit verify", "audit checkpoint",
        "audit checkpoints", "audit export", "kafka init",
        "stats export",
    }  # fmt: skip


@pytest.mark.parametrize("path", leaves(), ids=" ".join)
def test_every_command_explains_itself_with_an_example(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the same text at any terminal width
    assert "Usage: gridflow " + " ".join(path) in out
    assert "Example: " in out and "gridflow " + path[0] in out.split("Example: ", 1)[1]


def test_exit_codes(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert main(["token", "issue", "--role", "mayor", "--subject", "x"]) == 2
    assert main(["api", "--workers", "many"]) == 2
    assert main(["grids", "import", str(tmp_path / "missing.geojson")]) == 2
    assert main(["device", "revoke"]) == 2  # neither --key nor --id
    capsys.readouterr()
    # No database yet: doctor fails, says why, and creates nothing.
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  database  SQLite, no database file" in out
    assert "WARN  settings  no signing secret yet" in out
    assert not (data_dir / "gridflow.db").exists() and not (data_dir / "jwt-secret").exists()
    # An empty one has no grids and no policies.
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  grids" in out and "gridflow grids import" in out


def test_command_lines_are_checked_without_running() -> None:
    assert command_for(["api", "--port", "8001", "--workers", "2"]).name == "api"
    assert command_for(["kafka", "init"]).name == "init"
    with pytest.raises(CliError):
        command_for(["kafka", "topics"])
    with pytest.raises(Exception, match="integer"):
        command_for(["api", "--workers", "many"])


def test_json_for_scripts(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "issue", "--role", "operator", "--subject", "ops-1", "--json"]) == 0
    token = json.loads(capsys.readouterr().out)
    assert token["role"] == "operator" and token["expires_at"].startswith("20")
    good = tmp_path / "city.geojson"
    good.write_text(json.dumps(GridIndex(demo_grids(), 1).to_geojson()), encoding="utf-8")
    assert main(["grids", "validate", str(good), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["units"] > 0
    assert main(["grids", "import", str(good), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["version"] == 1 and imported["grids"] == report["grids"]
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}))
    assert main(["grids", "validate", str(bad), "--json"]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert refused["valid"] is False and refused["problems"]
    assert main(["device", "create", "--id", "cam-1"]) == 0
    capsys.readouterr()
    assert main(["device", "list", "--json"]) == 0
    (device,) = json.loads(capsys.readouterr().out)
    assert device["id"] == "cam-1" and device["state"] == "active" and device["live_keys"]
    assert "secret" not in device
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []


def test_progress_is_plain_lines_off_a_terminal(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "city.geojson"
    good.write_text(json.dumps(GridIndex(demo_grids(), 1).to_geojson()), encoding="utf-8")
    assert main(["grids", "import", str(good)]) == 0
    out = capsys.readouterr()
    assert "as version 1" in out.out  # the result on standard output, progress apart
    lines = out.err.splitlines()
    n = len(demo_grids())
    for stage in ("reading features", "checking the set", "storing grids"):
        assert any(line.startswith(f"gridflow: {stage}: ") for line in lines), stage
    assert f"gridflow: storing grids: {n}/{n} (100%)" in lines
    assert all("\x1b" not in line for line in lines)  # no terminal codes in a log


def test_plain_lines_are_few_and_end_once() -> None:
    out = io.StringIO()
    with progress(out, bar=False) as told:
        for done in range(1001):
            told("counting", done, 1000)
        told("counting", 1000, 1000)
    lines = out.getvalue().splitlines()
    assert lines[0] == "gridflow: counting: 0/1000 (0%)"
    assert lines[-1] == "gridflow: counting: 1000/1000 (100%)"
    assert len(lines) == 11  # every tenth, the end once


def test_a_terminal_gets_a_bar() -> None:
    out = io.StringIO()
    with progress(out, bar=True) as told:
        told("storing grids", 5, 10)
        told("storing grids", 10, 10)
    text = out.getvalue()
    assert "storing grids" in text and "10/10" in text


def test_shell_completion_script(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Typer detects the shell from the parent process, and takes no shell name unless detection
    # is off: with no shell above the test run (a detached CI job) it would find none.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    assert main(["--show-completion", "bash"]) == 0
    assert "_GRIDFLOW_COMPLETE" in capsys.readouterr().out


def test_nothing_heavy_is_imported_until_a_command_runs() -> None:
    probe = (
        "import sys, app.cli.root; "
        "print([m for m in ('uvicorn', 'app.runtime', 'app.http.app', 'aiokafka') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_broken_settings_are_findings_and_exit_codes_not_tracebacks(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRIDFLOW_DB__URL", "notaurl")
    monkeypatch.setenv("GRIDFLOW_SLA__CALENDAR__TIMEZONE", "Mars/Base")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("FAIL  settings  GRIDFLOW_DB__URL does not parse")
    assert out[1].startswith("FAIL  calendar  could not check: ZoneInfoNotFoundError")
    assert out[2].startswith("skip  database")
    assert main(["db", "upgrade"]) == 2  # a bad setting is bad input
    assert "URL" in capsys.readouterr().err
    monkeypatch.delenv("GRIDFLOW_DB__URL")
    monkeypatch.setenv("GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nobody there
    assert main(["kafka", "init"]) == 1  # a service away is a failure, said in one line
    err = capsys.readouterr().err
    assert "gridflow: failed: KafkaConnectionError" in err and "Traceback" not in err
