"""infra/ and prefect.yaml agree with the code: names, ports, settings and versions.

No container engine runs here, so the files are parsed and cross-checked: every
service a URL names exists and listens on that port, every variable set is one
the code or its libraries read, the deployments are the ones ``mloop deploy``
makes, and the images pin the versions of the lock file.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import version
from urllib.parse import urlsplit

import pytest
import yaml

from components.core.config import load_params
from flows.deploy import schedules
from tests.helpers import REPO, hpa_metric

INFRA = REPO / "infra"
LIBRARY_SETTINGS = {"MLFLOW_TRACKING_URI", "PREFECT_API_URL", "BENTOML_HOME"}


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _k8s() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def _option(command: str | list, name: str) -> str:
    words = command.split() if isinstance(command, str) else command
    return words[words.index(name) + 1]


def _read_by_code(name: str) -> bool:
    """Some module of the project reads the environment variable ``name``: an
    ``MLOOP_*`` one is a field of the settings object, any other is named in the code."""
    from components.core.settings import Settings

    if name.startswith("MLOOP_"):
        return name.removeprefix("MLOOP_").lower() in Settings.model_fields
    sources = [*(REPO / "components").rglob("*.py"), *(REPO / "flows").rglob("*.py")]
    return any(f'"{name}"' in path.read_text() for path in sources)


def test_prefect_yaml_declares_what_mloop_deploy_registers():
    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert declared["prefect-version"] == version("prefect")
    expected = schedules(load_params(REPO / "params.yaml"))
    assert [d["name"] for d in declared["deployments"]] == [s.name for s in expected]
    for deployment, schedule in zip(declared["deployments"], expected, strict=True):
        assert deployment["entrypoint"] == schedule.entrypoint
        assert deployment["description"] == schedule.description
        (when,) = deployment["schedules"]
        if schedule.cron:
            assert when == {"cron": schedule.cron}
        else:
            assert when == {"interval": schedule.interval.total_seconds()}
        path, function = schedule.entrypoint.split(":")
        module = path.removesuffix(".py").replace("/", ".")
        assert getattr(importlib.import_module(module), function).name == schedule.flow
        assert deployment["work_pool"]["name"] == _compose()["x-mloop-env"]["MLOOP_WORK_POOL"]
        assert deployment["parameters"]["workspace"] == _compose()["x-mloop-env"]["MLOOP_WORKSPACE"]
        assert deployment["parameters"]["params_file"].startswith(
            deployment["parameters"]["workspace"] + "/"
        )
        extra = {k: v for k, v in deployment["parameters"].items()
                 if k not in ("params_file", "workspace")}  # fmt: skip
        assert extra == dict(schedule.parameters)
    (pull,) = declared["pull"]
    code_dir = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert f"WORKDIR {code_dir}\n" in dockerfile and "COPY flows ./flows" in dockerfile


def test_compose_services_ports_and_settings_agree():
    compose = _compose()
    services = compose["services"]
    env = compose["x-mloop-env"]
    for name, service in services.items():  # every dependency is a service
        assert set(service.get("depends_on", ())) <= set(services), name
    for key in env:
        assert key in LIBRARY_SETTINGS or _read_by_code(key), f"nothing reads {key}"

    mlflow = services["mlflow"]["command"]
    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])
    assert tracking.hostname in services and tracking.port == int(_option(mlflow, "--port"))
    assert "127.0.0.1:5000:5000" in services["mlflow"]["ports"]
    backend = urlsplit(_option(mlflow, "--backend-store-uri"))
    assert backend.scheme == "postgresql" and backend.hostname in services
    assert backend.path == "/" + services["postgres"]["environment"]["POSTGRES_DB"]
    artifacts = urlsplit(_option(mlflow, "--artifacts-destination"))
    assert artifacts.scheme == "s3"
    assert f"store/{artifacts.hostname}" in services["minio-bucket"]["entrypoint"]
    endpoint = urlsplit(services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"])
    assert endpoint.hostname in services and endpoint.port == 9000
    assert "mlflow:5000" in _option(mlflow, "--allowed-hosts").split(",")

    prefect = services["prefect-server"]
    api = urlsplit(env["PREFECT_API_URL"])
    assert api.hostname == "prefect-server" and api.path == "/api"
    assert api.port == int(_option(prefect["command"], "--port"))
    assert prefect["image"].startswith(f"prefecthq/prefect:{version('prefect')}-python3.11")
    database = urlsplit(prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert database.scheme == "postgresql+asyncpg" and database.hostname in services
    assert f"CREATE DATABASE {database.path[1:]};" in (INFRA / "postgres-init.sql").read_text()

    worker = services["prefect-worker"]["command"]
    assert _option(worker, "--pool") == env["MLOOP_WORK_POOL"]
    assert '; mloop deploy"' in services["deploy"]["command"]  # the pool comes from env

    import typer.main

    from flows.cli.app import app

    serve = services["bento"]["command"]
    port = _option(serve, "--port")
    assert f"127.0.0.1:{port}:{port}" in services["bento"]["ports"]
    (default,) = [p.default for p in typer.main.get_command(app).commands["serve"].params
                  if p.name == "port"]  # fmt: skip
    assert default == int(port)
    assert env["MLOOP_INFERENCE_LOG"].startswith(env["MLOOP_WORKSPACE"] + "/")
    for image in ("mlflow", "psycopg2-binary", "boto3"):  # the server's image: the lock's pins
        assert f"{image}=={version(image)}" in (INFRA / "mlflow.Dockerfile").read_text()


def test_compose_exposes_nothing_unauthenticated_and_holds_no_secret():
    """Published ports listen on loopback only; every secret must come from infra/.env."""
    text = (INFRA / "docker-compose.yml").read_text()
    services = _compose()["services"]
    for name, service in services.items():
        for mapping in service.get("ports", ()):
            assert str(mapping).startswith("127.0.0.1:"), (name, mapping)
    secrets = ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MLOOP_API_TOKEN",
               "MLOOP_METRICS_TOKEN")  # fmt: skip
    for secret in secrets:
        assert f"${{{secret}:-" not in text, f"{secret} has a default"
        assert f"${{{secret}:?" in text, f"{secret} is not required"
        assert f"{secret}=" in (INFRA / ".env.example").read_text()
    bento = services["bento"]["environment"]
    assert "MLOOP_API_TOKEN" in bento and "MLOOP_METRICS_TOKEN" in bento
    for literal in ("password", "secret"):  # no literal credentials left in the file
        for line in text.splitlines():
            if literal in line.lower() and ":" in line and "${" not in line:
                assert line.strip().startswith("#"), line


def test_kubernetes_bento_takes_its_tokens_from_a_secret():
    deployment = _k8s()[("Deployment", "bento")]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in ("MLOOP_API_TOKEN", "MLOOP_METRICS_TOKEN"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "mloop-secrets" and not ref.get("optional"), key


def test_kubernetes_manifests_wire_up():
    docs = _k8s()
    deployments = {name: d for (kind, name), d in docs.items() if kind == "Deployment"}
    assert set(deployments) == {"mlflow", "prefect-worker", "bento"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            pod["metadata"]["labels"].items()
        )
        ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", ())}
        service = docs.get(("Service", name))
        if service is None:
            assert name == "prefect-worker"  # polls the server; nothing connects to it
            continue
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name

    worker = deployments["prefect-worker"]["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])
    mlflow_service = docs[("Service", tracking.hostname)]
    assert tracking.port in {p["port"] for p in mlflow_service["spec"]["ports"]}
    assert _option(container["command"], "--pool") == env["MLOOP_WORK_POOL"] == "mloop"
    assert urlsplit(env["PREFECT_API_URL"]).path == "/api"
    claim = worker["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in docs
    for key in env:
        assert key in LIBRARY_SETTINGS or _read_by_code(key), f"nothing reads {key}"

    bento = deployments["bento"]["spec"]["template"]["spec"]["containers"][0]
    assert bento["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert bento["livenessProbe"]["httpGet"]["path"] == "/livez"
    for item in bento["env"]:
        assert _read_by_code(item["name"]), item["name"]
    hpa = docs[("HorizontalPodAutoscaler", "bento")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "bento"
    assert hpa["spec"]["minReplicas"] <= deployments["bento"]["spec"]["replicas"]
    assert hpa_metric() == "bentoml_service_request_in_progress"


@pytest.mark.parametrize("path", ["Dockerfile", "mlflow.Dockerfile"])
def test_dockerfiles_copy_only_what_exists(path):
    for line in (INFRA / path).read_text().splitlines():
        if line.startswith("COPY "):
            for source in re.split(r"\s+", line)[1:-1]:
                assert (REPO / source).exists(), f"{path}: {source}"
