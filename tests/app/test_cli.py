"""The gridflow command, run in-process against a temporary data directory."""

import json
from pathlib import Path

import pytest

from app.auth.tokens import Role, TokenVerifier
from app.cli import main
from app.platform.settings import Settings
from geo.demo_city import demo_grids
from geo.grids import GridIndex


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRIDFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GRIDFLOW_DB__URL", raising=False)
    return tmp_path / "data"


def test_token_issue_prints_a_verifiable_token(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "issue", "--role", "worker", "--subject", "w-1"]) == 0
    token = capsys.readouterr().out.strip()
    settings = Settings()
    verifier = TokenVerifier(settings.jwt_secret(), issuer="gridflow", audience="gridflow")
    who = verifier.verify(token)
    assert (who.role, who.subject) == (Role.WORKER, "w-1")
    assert (data_dir / "jwt-secret").stat().st_mode & 0o077 == 0


def test_token_issue_with_a_scope(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["token", "issue", "--role", "operator", "--subject", "ops-hu"]
    assert main([*args, "--scope", "street:330106001", "--json"]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert issued["scope"] == "street:330106001"
    verifier = TokenVerifier(Settings().jwt_secret(), issuer="gridflow", audience="gridflow")
    assert str(verifier.verify(issued["token"]).scope) == "street:330106001"
    assert main([*args, "--scope", "town:330106001"]) == 2
    assert "unknown scope kind 'town'" in capsys.readouterr().err
    assert main([*args, "--scope", "street:3301"]) == 2
    assert "9 digits" in capsys.readouterr().err
    worker = [
        "token",
        "issue",
        "--role",
        "worker",
        "--subject",
        "w-1",
        "--scope",
        "district:330106",
    ]
    assert main(worker) == 2
    captured = capsys.readouterr()
    assert "only operator and admin" in captured.err and not captured.out


def test_production_refuses_a_missing_secret(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRIDFLOW_ENV", "production")
    assert main(["token", "issue", "--role", "admin", "--subject", "a"]) == 2
    assert "GRIDFLOW_AUTH__SECRET" in capsys.readouterr().err


def test_db_upgrade_and_device_keys(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert (data_dir / "gridflow.db").exists()
    capsys.readouterr()
    assert main(["device", "create", "--id", "cam-900", "--name", "Gate camera"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["device_id"] == "cam-900" and first["key_id"].startswith("dk_")
    assert first["secret"].startswith("gfs_") and len(first["secret"]) > 40
    assert main(["device", "create", "--id", "cam-900"]) == 2  # ids are unique
    assert main(["device", "rotate", "--id", "cam-900"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["key_id"] != first["key_id"] and second["secret"] != first["secret"]
    assert main(["device", "list"]) == 0
    listing = capsys.readouterr().out
    assert "cam-900\tactive\tGate camera" in listing
    assert first["key_id"] in listing and second["key_id"] in listing
    assert first["secret"] not in listing and second["secret"] not in listing
    assert main(["device", "revoke", "--key", first["key_id"]]) == 0
    capsys.readouterr()
    assert main(["device", "list"]) == 0
    listing = capsys.readouterr().out
    assert first["key_id"] not in listing and second["key_id"] in listing
    assert main(["device", "revoke", "--id", "cam-900"]) == 0
    assert main(["device", "list"]) == 0
    assert "cam-900\trevoked" in capsys.readouterr().out
    assert main(["device", "revoke", "--key", "dk_nope"]) == 2
    # The secrets are nowhere in the database.
    stored = (data_dir / "gridflow.db").read_bytes()
    assert first["secret"].encode() not in stored and second["secret"].encode() not in stored


def test_grids_import_valid_and_invalid(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "city.geojson"
    good.write_text(json.dumps(GridIndex(demo_grids(), 1).to_geojson()), encoding="utf-8")
    assert main(["grids", "import", str(good)]) == 0
    assert "as version 1" in capsys.readouterr().out
    assert main(["grids", "import", str(good)]) == 0
    assert "as version 2" in capsys.readouterr().out

    bad = tmp_path / "bad.geojson"
    bad.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"code": "abc"},
                        "geometry": {"type": "Point", "coordinates": [0, 0]},
                    }
                ],
            }
        )
    )
    assert main(["grids", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "feature 0" in err and "digits" in err
    assert main(["grids", "import", str(tmp_path / "missing.geojson")]) == 2

    holed = GridIndex(demo_grids(), 1).to_geojson()
    gone = next(f for f in holed["features"] if f["properties"]["code"] == "33010600100106")
    holed["features"].remove(gone)
    path = tmp_path / "holed.geojson"
    path.write_text(json.dumps(holed), encoding="utf-8")
    assert main(["grids", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gap:" in err and "m²" in err
    assert main(["grids", "import", "--allow-gaps", str(path)]) == 0
    out = capsys.readouterr()
    assert "as version 3" in out.out and "warning: a gap of" in out.err
