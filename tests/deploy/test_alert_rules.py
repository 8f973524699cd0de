"""The Prometheus alert rules (deploy/prometheus/alerts.yml, issue 25 item 4): promtool
checks them and runs their unit tests (alerts.test.yml), and they ask only for metrics the
code defines, about every kind of case, past the threshold the worker escalates at.

promtool comes with the Debian package `prometheus`; .ci/run installs it, and without it the
promtool tests skip saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only safe_load is used

from domain.payments import CaseKind
from observability.metrics import API, WORKER
from paysaga.settings import Settings
from tests.support.dashboards import promql_metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
COMPOSE = ROOT / "docker-compose.yml"

# Prometheus's own, per scrape target.
BUILT_IN = {"up"}
CASE_RULES = {"PaysagaMoneyParked", "PaysagaConfirmationStuck", "PaysagaRefundFailed"}
SEVERITIES = {"critical", "warning"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: apt-get install prometheus; .ci/run installs it")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


@cache
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule(name: str) -> dict[str, Any]:
    (found,) = [r for r in rules() if r.get("alert") == name]
    return found


def defined_metric_names() -> set[str]:
    """Every name observability/metrics.py registers, as PromQL sees it (counters with
    `_total`, histograms by their base name)."""
    names: set[str] = set()
    for registry in (API, WORKER):
        for family in registry.collect():
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


# --- promtool ------------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    checked = run("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    tested = run("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            if check.get("exp_alerts"):
                fired.add(check["alertname"])
    assert fired == {r["alert"] for r in rules()}


def test_promtool_checks_the_prometheus_config_as_compose_mounts_it(tmp_path: Path) -> None:
    """prometheus.yml names files by their paths in the container: each is replaced by the
    repository file compose mounts there (the scrape token by a stand-in), then checked."""
    compose = yaml.safe_load(COMPOSE.read_text())
    service = compose["services"]["prometheus"]
    config = (PROMETHEUS / "prometheus.yml").read_text()
    for volume in service["volumes"]:
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            config = config.replace(target, str(ROOT / source))
    token = tmp_path / "metrics_token"
    token.write_text("scrape-token")
    for secret in service["secrets"]:
        config = config.replace(f"/run/secrets/{secret}", str(token))
    checked_file = tmp_path / "prometheus.yml"
    checked_file.write_text(config)
    checked = run("check", "config", str(checked_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


# --- what the rules ask for ----------------------------------------------------------------


def test_every_metric_an_alert_uses_is_one_the_code_defines() -> None:
    """A metric renamed in the code, or a typo in a rule, would make an alert that never
    fires; this makes it a failing test instead."""
    used: set[str] = set()
    for r in rules():
        used |= promql_metric_names(r["expr"])
    known = defined_metric_names() | BUILT_IN
    assert used - known == set()
    # The registry check sees what it should (the API's scrape-time gauges among them).
    assert {"paysaga_open_cases", "paysaga_open_case_oldest_seconds"} <= defined_metric_names()


def test_every_kind_of_case_is_alerted_on_by_exactly_one_rule() -> None:
    """A new CaseKind must be placed: money parked, a confirmation stuck, or its own rule."""
    seen: list[str] = []
    for name in CASE_RULES:
        for matcher in re.findall(r'kind=~?"([^"]*)"', rule(name)["expr"]):
            seen.extend(matcher.split("|"))
    assert sorted(seen) == sorted(kind.value for kind in CaseKind)


def test_case_ages_alert_at_the_worker_escalation_threshold() -> None:
    """alerts.yml's 3600 is PAYSAGA_UNMATCHED_ALERT_SECONDS's default; both must move together
    (the comment there says so; this notices a default changed alone)."""
    default = Settings.model_fields["unmatched_alert_seconds"].default
    for name in ("PaysagaMoneyParked", "PaysagaConfirmationStuck"):
        expr = rule(name)["expr"]
        assert "paysaga_open_case_oldest_seconds" in expr
        assert re.findall(r">\s*(\d+)\s*$", expr) == [str(default)], name


def test_each_alert_has_a_severity_the_alertmanager_routes_and_says_what_to_do() -> None:
    for r in rules():
        assert r["labels"]["severity"] in SEVERITIES, r["alert"]
        assert r["annotations"]["summary"].strip(), r["alert"]
        assert len(r["annotations"]["description"]) > 100, r["alert"]
    # Where a CLI command acts on it, the description names it.
    for name in CASE_RULES:
        assert "`paysaga admin cases`" in rule(name)["annotations"]["description"], name
    assert "paysaga admin retry" in rule("PaysagaConfirmationStuck")["annotations"]["description"]
    for action in ("attach", "refund", "resolve"):
        assert f"paysaga admin {action}" in rule("PaysagaMoneyParked")["annotations"]["description"]
