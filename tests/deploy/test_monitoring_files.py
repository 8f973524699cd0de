"""The monitoring deployment files read together, as Docker Compose, Prometheus, Alertmanager
and Grafana would read them (there is no Docker engine here): every name one file uses for
another (service, port, path, datasource uid) resolves, and only the API is published beyond
the host's loopback. The alert rules themselves are tested in test_alert_rules.py.

The dashboards' queries are read by tests/support/dashboards.py, which the tests that compare
the dashboard with the real /metrics endpoints use too.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only safe_load is used

from tests.support.dashboards import (
    dashboard_metric_names,
    dashboards,
    exprs,
    panels,
    promql_metric_names,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "paysaga.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager"

# Every metric the contract names, plus the API's request histogram: each must be on a panel.
PAYSAGA_METRICS = {
    "paysaga_webhooks_total",
    "paysaga_open_cases",
    "paysaga_http_request_seconds",
    "paysaga_confirmations_total",
    "paysaga_confirmation_seconds",
    "paysaga_notifications_total",
    # Issue 25: the gateway calls, the breaker, the escalations and how long cases wait.
    "paysaga_gateway_call_seconds",
    "paysaga_gateway_circuit_state",
    "paysaga_escalations_total",
    "paysaga_open_case_oldest_seconds",
}
# Names as the Python SDK's Prometheus exporter writes them with durations_as_seconds=True and
# the default suffix options: histograms keep their documented name (no `_seconds`), counters
# get no `_total` (checked against temporalio 1.35's exporter).
TEMPORAL_METRICS = {
    "temporal_workflow_completed",
    "temporal_workflow_failed",
    "temporal_workflow_task_execution_failed",
    "temporal_activity_execution_failed",
    "temporal_activity_execution_latency",
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_worker_task_slots_available",
}


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = _load_yaml(COMPOSE)
    return data


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _env(service: str) -> dict[str, str]:
    """A service's environment as a dict (compose allows a mapping or a list of KEY=VALUE)."""
    raw = _services()[service].get("environment") or {}
    if isinstance(raw, list):
        return dict(str(item).split("=", 1) for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def _api_port() -> int:
    """The port `paysaga api` listens on: `--port` if the command passes one, otherwise
    PAYSAGA_API_PORT (paysaga.settings), whose default is 8000."""
    command = [str(part) for part in _services()["api"]["command"]]
    if "--port" in command:
        return int(command[command.index("--port") + 1])
    return int(_env("api").get("PAYSAGA_API_PORT", "8000"))


def _published(service: str) -> list[tuple[str, int]]:
    """(host address, container port) of each published port; "" is every interface."""
    out: list[tuple[str, int]] = []
    for entry in _services()[service].get("ports") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("host_ip", "")), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else ""
        out.append((host_ip, int(parts[-1])))
    return out


def _bind_mounts(service: str) -> dict[str, str]:
    """Container path -> repository-relative source, for the service's bind mounts."""
    out: dict[str, str] = {}
    for entry in _services()[service].get("volumes") or []:
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
        else:
            source, target = str(entry).split(":")[:2]
        if source.startswith("."):
            out[target] = source
    return out


# --- docker-compose.yml --------------------------------------------------------------------


def test_every_depends_on_names_a_service() -> None:
    services = _services()
    for name, service in services.items():
        deps = service.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_only_the_api_is_published_on_all_interfaces() -> None:
    for name in _services():
        for host_ip, _ in _published(name):
            if name != "api":
                assert host_ip == "127.0.0.1", f"{name} is published beyond loopback"
    assert ("", _api_port()) in _published("api")
    assert ("127.0.0.1", 3000) in _published("grafana")
    assert ("127.0.0.1", 9090) in _published("prometheus")
    assert ("127.0.0.1", 9093) in _published("alertmanager")


def test_worker_metrics_reachable_on_the_network_but_not_published() -> None:
    env = _env("worker")
    assert ipaddress.ip_address(env["PAYSAGA_WORKER_METRICS_HOST"]).is_unspecified
    assert _published("worker") == []
    # The worker still gets every shared setting (the YAML merge of &paysaga-env), and the
    # metrics settings stay the worker's own.
    assert _env("api").items() <= env.items()
    assert "PAYSAGA_WORKER_METRICS_PORT" not in _env("api")


def test_named_volumes_declared_and_bind_mount_sources_exist() -> None:
    declared = set(_compose().get("volumes") or {})
    for name, service in _services().items():
        for entry in service.get("volumes") or []:
            source = str(entry.get("source", "")) if isinstance(entry, dict) else entry
            source = str(source).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith("/"):
                assert source in declared, f"{name} uses undeclared volume {source}"
    assert any(str(v).endswith(":/prometheus") for v in _services()["prometheus"]["volumes"])
    assert any(str(v).endswith(":/var/lib/grafana") for v in _services()["grafana"]["volumes"])


def test_images_pinned_and_grafana_has_no_committed_password() -> None:
    for name in ("prometheus", "alertmanager", "grafana"):
        image = str(_services()[name]["image"])
        tag = image.rpartition(":")[2]
        assert ":" in image and tag not in {"latest", "main"}, f"{name}: {image} is not pinned"
    env = _env("grafana")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    password = env["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", password), "must come from the environment"


# --- Prometheus ----------------------------------------------------------------------------


def _scrape_targets() -> dict[str, list[str]]:
    config = _load_yaml(PROMETHEUS)
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }


def test_prometheus_scrapes_api_and_worker_where_they_listen() -> None:
    config = _load_yaml(PROMETHEUS)
    assert config["global"]["scrape_interval"] == "15s"
    ports = {"api": _api_port(), "worker": int(_env("worker")["PAYSAGA_WORKER_METRICS_PORT"])}
    targets = _scrape_targets()
    assert targets == {"paysaga-api": [f"api:{ports['api']}"], "paysaga-worker": ["worker:9464"]}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for target in [t for sc in job["static_configs"] for t in sc["targets"]]:
            host, port = target.split(":")
            assert host in _services(), f"{target}: no such compose service"
            assert int(port) == ports[host], f"{target}: {host} listens on {ports[host]}"


def test_prometheus_scrapes_the_api_with_the_token_the_api_reads() -> None:
    """`/metrics` is guarded by PAYSAGA_METRICS_TOKEN: compose must set it on the API, hand
    the same variable to Prometheus as a secret, and the scrape must bear that file."""
    (api_job,) = [
        j for j in _load_yaml(PROMETHEUS)["scrape_configs"] if j["job_name"] == "paysaga-api"
    ]
    authorization = api_job["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    path = authorization["credentials_file"]
    secret = path.removeprefix("/run/secrets/")
    assert secret in _services()["prometheus"]["secrets"], "prometheus is not given the token"
    assert _compose()["secrets"][secret] == {"environment": "PAYSAGA_METRICS_TOKEN"}
    token = _env("api")["PAYSAGA_METRICS_TOKEN"]
    assert token.startswith("${PAYSAGA_METRICS_TOKEN:?"), "compose must refuse to start without it"


def test_prometheus_reads_the_mounted_config() -> None:
    service = _services()["prometheus"]
    config_file = next(
        str(arg).split("=", 1)[1]
        for arg in service.get("command", [])
        if str(arg).startswith("--config.file=")
    )
    assert _bind_mounts("prometheus")[config_file] == "./deploy/prometheus/prometheus.yml"


def test_prometheus_loads_the_mounted_rules_and_alerts_the_alertmanager_service() -> None:
    config = _load_yaml(PROMETHEUS)
    mounts = _bind_mounts("prometheus")
    for path in config["rule_files"]:
        assert path in mounts, f"{path} is not mounted into prometheus"
        assert (ROOT / mounts[path]).is_file()
    assert "./deploy/prometheus/alerts.yml" in [mounts[p] for p in config["rule_files"]]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    targets = [t for sc in alertmanagers["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    assert "alertmanager" in _services()
    # Alertmanager listens on 9093 in its container (the port compose publishes on loopback).
    assert ("127.0.0.1", 9093) in _published("alertmanager")


# --- Alertmanager --------------------------------------------------------------------------


def _alertmanager_entrypoint() -> Path:
    """The repository file compose runs as Alertmanager's entrypoint."""
    service = _services()["alertmanager"]
    shell, script = (str(part) for part in service["entrypoint"])
    assert shell == "/bin/sh"
    for target, source in _bind_mounts("alertmanager").items():
        if script.startswith(target + "/"):
            return ROOT / source / script.removeprefix(target + "/")
    raise AssertionError(f"{script} is not in a mounted directory")


def _start_alertmanager(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Runs the entrypoint as compose would, with a stand-in `alertmanager` that records its
    arguments; returns the config it would have started with, and the arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "alertmanager"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n')
    fake.chmod(0o755)
    config = tmp_path / "alertmanager.yml"
    command = [str(arg) for arg in _services()["alertmanager"]["command"]]
    subprocess.run(
        ["/bin/sh", str(_alertmanager_entrypoint()), *command],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PAYSAGA_ALERTMANAGER_CONFIG": str(config),
            **env,
        },
        check=True,
        timeout=30,
    )
    args = (bin_dir / "args").read_text().split()
    assert f"--config.file={config}" in args and command[0] in args
    amtool = shutil.which("amtool")  # Debian's prometheus-alertmanager; else the checks below
    if amtool is not None:
        subprocess.run([amtool, "check-config", str(config)], check=True, timeout=30)
    return _load_yaml(config), args


def _routes(route: dict[str, Any]) -> list[dict[str, Any]]:
    return [route] + [r for child in route.get("routes", []) for r in _routes(child)]


def test_alertmanager_config_mails_the_admins_through_the_relay_by_severity(
    tmp_path: Path,
) -> None:
    env = _env("alertmanager")
    # The same variables the app's mail reads, not a second set to keep in step.
    for name in ("PAYSAGA_SMTP_HOST", "PAYSAGA_SMTP_PORT", "PAYSAGA_SMTP_FROM"):
        assert env[name] == _env("api")[name], name
    assert env["PAYSAGA_ADMIN_EMAIL"] == "${PAYSAGA_ADMIN_EMAIL:-}", "from .env, never committed"

    config, _ = _start_alertmanager(
        tmp_path,
        {
            "PAYSAGA_SMTP_HOST": "relay.internal",
            "PAYSAGA_SMTP_PORT": "2525",
            "PAYSAGA_SMTP_FROM": "alerts@shop.example",
            "PAYSAGA_ADMIN_EMAIL": "ops@shop.example,dana@shop.example",
        },
    )
    assert config["global"]["smtp_smarthost"] == "relay.internal:2525"
    assert config["global"]["smtp_from"] == "alerts@shop.example"
    receivers = {r["name"]: r for r in config["receivers"]}
    routes = _routes(config["route"])
    for route in routes:
        assert route["receiver"] in receivers, route
    for receiver in receivers.values():
        for email in receiver["email_configs"]:
            assert email["to"] == "ops@shop.example,dana@shop.example"
    # Every severity a rule carries has its own route.
    rules = [r for g in _load_yaml(ALERTS)["groups"] for r in g["rules"]]
    severities = {r["labels"]["severity"] for r in rules}
    routed = {m for route in routes[1:] for m in route.get("matchers", [])}
    assert {f'severity="{s}"' for s in severities} <= routed


def test_alertmanager_without_an_admin_address_mails_nobody(tmp_path: Path) -> None:
    config, _ = _start_alertmanager(tmp_path, {"PAYSAGA_SMTP_HOST": "relay.internal"})
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert set(receiver) == {"name"}


def test_alertmanager_config_is_the_one_compose_mounts() -> None:
    script = _alertmanager_entrypoint()
    assert script.parent == ALERTMANAGER
    assert (script.parent / "alertmanager.yml").is_file()
    placeholders = set(re.findall(r"\$\{(\w+)\}", (ALERTMANAGER / "alertmanager.yml").read_text()))
    # Each is filled by the entrypoint from a variable compose gives the service.
    assert placeholders <= set(_env("alertmanager"))
    for name in placeholders:
        assert f"${{{name}}}" in script.read_text(), name


# --- Grafana -------------------------------------------------------------------------------


def _datasource() -> dict[str, Any]:
    (source,) = _load_yaml(DATASOURCES)["datasources"]
    datasource: dict[str, Any] = source
    return datasource


def test_datasource_points_at_the_prometheus_service() -> None:
    datasource = _datasource()
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in _services()
    mounts = _bind_mounts("grafana")
    assert mounts["/etc/grafana/provisioning/datasources"] == (
        "./deploy/grafana/provisioning/datasources"
    )


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    mounts = _bind_mounts("grafana")
    assert mounts["/etc/grafana/provisioning/dashboards"] == (
        "./deploy/grafana/provisioning/dashboards"
    )
    (provider,) = _load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert mounts[provider["options"]["path"].rstrip("/")] == "./deploy/grafana/dashboards"
    assert dashboards(), "no dashboard JSON to provision"


def test_every_panel_uses_the_provisioned_datasource() -> None:
    uid = _datasource()["uid"]
    for dashboard in dashboards():
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], f"{panel['title']} has no query"
            for target in panel["targets"]:
                assert target.get("datasource", {"uid": uid})["uid"] == uid, panel["title"]


def test_histogram_quantiles_aggregate_buckets_by_le() -> None:
    for expr in exprs():
        if "histogram_quantile" in expr:
            assert "_bucket" in expr, expr
            assert re.search(r"by \((?:[\w, ]*\b)?le\b", expr), expr
            # With durations_as_seconds the SDK does not add `_seconds` to its histograms.
            assert "temporal_" not in expr or "_seconds_bucket" not in expr, expr


def test_dashboard_covers_every_contract_metric() -> None:
    names = dashboard_metric_names()
    assert names == PAYSAGA_METRICS | TEMPORAL_METRICS


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_seconds_bucket{status=~"5.."}'
        "[$__rate_interval]))) / ignoring(x) b_count or vector(0) + c_total offset 5m"
    )
    assert promql_metric_names(expr) == {"a_seconds", "b", "c_total"}


def test_the_image_copies_every_package_the_project_installs() -> None:
    """`pip install .` in the Dockerfile fails on a package directory it was not given."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    top_level = {name.split(".")[0] for name in project["packages"]} | {
        f"{module}.py" for module in project["py-modules"]
    }
    copied = {
        line.split()[1].rstrip("/")
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    }
    assert top_level - copied == set()


def test_no_service_logs_in_to_postgres_as_the_superuser() -> None:
    """Least privilege (issue 27): the migrations run as the owner, the api and worker as a
    member of `paysaga_app` (migration 0006), Temporal as its own login; the init script
    that makes those roles is where the postgres image runs it."""

    def login(service: str) -> str:
        return _env(service)["PAYSAGA_DATABASE_URL"].split("://", 1)[1].split(":", 1)[0]

    assert login("migrate") == "paysaga_owner"
    assert login("api") == login("worker") == "paysaga_api"
    assert _env("temporal")["POSTGRES_USER"] == "temporal"
    assert _bind_mounts("postgres")["/docker-entrypoint-initdb.d"] == "./deploy/postgres/init"
    script = (ROOT / "deploy" / "postgres" / "init" / "10-roles.sh").read_text()
    for role in ("paysaga_owner LOGIN", "paysaga_app NOLOGIN", "IN ROLE paysaga_app", "temporal"):
        assert role in script
    assert "ALTER ROLE" not in script and "SUPERUSER" not in script


def test_the_image_base_is_an_exact_release() -> None:
    """A rebuild must get the same interpreter: the base image names a patch release."""
    (base,) = [
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    ]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
