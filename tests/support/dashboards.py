"""The provisioned Grafana dashboards as Grafana reads them, and the metric names their
PromQL queries (tests/deploy checks the files; tests/api/test_attendee.py compares the names
with the real /metrics endpoints)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


@cache
def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def exprs() -> list[str]:
    return [
        str(target["expr"])
        for dashboard in dashboards()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in one PromQL expression, histogram suffixes removed."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and other strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr
    )  # label lists
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr):
        name = match.group(1)
        if name.lower() in _PROMQL_WORDS:
            continue
        names.add(re.sub(r"_(?:bucket|sum|count)$", "", name))
    return names


def dashboard_metric_names() -> set[str]:
    """Every metric name the provisioned dashboards query (without `_bucket`, `_sum`,
    `_count`), e.g. {"paysaga_webhooks_total", "paysaga_http_request_seconds", ...}."""
    names: set[str] = set()
    for expr in exprs():
        names |= promql_metric_names(expr)
    return names
