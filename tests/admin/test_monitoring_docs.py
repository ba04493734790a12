"""The sample alert rules and Grafana dashboard in docs/monitoring name only series that
GET /metrics serves, so copying them into Prometheus and Grafana works."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from django.test import Client

from queue_app.integrations.fathom import FathomClient
from tests.admin.test_metrics import TOKEN, samples

pytestmark = pytest.mark.django_db
MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
SERIES = re.compile(r"\bfathomloom_[a-z_]+\b")


def served_series(settings) -> set[str]:
    settings.METRICS_TOKEN = TOKEN
    # A call to Fathom (the sandbox), so that its counters have a series to serve.
    with FathomClient("sandbox-key-alice", base_url=settings.FATHOM_API_BASE_URL) as fathom:
        fathom.check_key()
    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    return {name for name, _ in samples(text)}


def test_every_alert_rule_uses_served_series_and_says_how_bad(settings, sandbox):
    served = served_series(settings)
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} >= {
        "FathomloomQueueStuck",
        "FathomloomFailureRateHigh",
    }
    for rule in rules:
        names = set(SERIES.findall(rule["expr"]))
        assert names and names <= served, (rule["alert"], names - served)
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]


def test_every_dashboard_query_uses_served_series(settings, sandbox):
    served = served_series(settings)
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        names = set(SERIES.findall(expr))
        assert names and names <= served, (expr, names - served)
