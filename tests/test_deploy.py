"""deploy/ cannot run here (no container engine): check what can be checked. The files parse,
every GRIDFLOW_ variable they set is a real setting, and every command is a real CLI command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from app.cli.root import command_for
from app.platform.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def setting_exists(name: str) -> bool:
    """GRIDFLOW_DB__URL → Settings.db.url, and so on."""
    parts = name.removeprefix("GRIDFLOW_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def test_setting_lookup_is_strict() -> None:
    assert setting_exists("GRIDFLOW_DB__URL") and setting_exists("GRIDFLOW_KAFKA__PARTITIONS")
    assert not setting_exists("GRIDFLOW_DB__NOPE") and not setting_exists("GRIDFLOW_NOPE")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def k8s() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "gridflow.yaml").read_text()) if d]


def test_compose_parses_and_uses_real_settings_and_commands() -> None:
    doc = compose()
    services = doc["services"]
    assert {"postgres", "kafka", "migrate", "kafka-init", "api", "dispatcher"} <= set(services)
    for name in ("migrate", "kafka-init", "api", "dispatcher"):
        service = services[name]
        for var in service["environment"]:
            assert setting_exists(var), f"{name}: {var} is not a setting"
        command_for(service["command"])  # exits on an unknown command
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_k8s_manifests_parse_and_use_real_settings_and_commands() -> None:
    docs = k8s()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "gridflow-api") in kinds and (
        "Deployment",
        "gridflow-dispatcher",
    ) in kinds
    assert ("Job", "gridflow-migrate") in kinds and ("Job", "gridflow-kafka-init") in kinds
    for d in docs:
        if d["kind"] in ("ConfigMap", "Secret"):
            values = d.get("data") or d.get("stringData") or {}
            for var in values:
                assert setting_exists(var), f"{d['metadata']['name']}: {var}"
        if d["kind"] in ("Deployment", "Job"):
            for container in d["spec"]["template"]["spec"]["containers"]:
                command_for(container["args"])
    api = next(d for d in docs if d["metadata"]["name"] == "gridflow-api")
    probe = api["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"


@pytest.mark.parametrize("command", [["api"], ["dispatcher"], ["db", "upgrade"], ["kafka", "init"]])
def test_dockerfile_commands_exist(command: list[str]) -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["gridflow"]' in text
    command_for(command)
