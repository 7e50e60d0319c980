"""deploy/: the Prometheus rules and configuration pass promtool (`check rules`, `test
rules` with a unit test per alert, `check config`), the Grafana dashboard loads with an
expression in every panel that is valid PromQL, and every metric the rules and the
dashboard name is one the product serves, read from a real /metrics scrape after real
traffic, so that renaming a metric breaks this test rather than the dashboards."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from config.celery import app
from tests.conftest import IN_CI
from tests.factories import api

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "scheduling.json"
TOKEN = "deploy-files-token"
METRIC = re.compile(r"\bscheduling_[a-z0-9_]+\b")
# Prometheus's own series the rules may use besides the product's.
PROMETHEUS_SERIES = {"up"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian's prometheus package ships it)"
        if IN_CI:  # CI=true (or 1, yes): a missing tool is a failure, never a skip
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return found


def run(promtool: str, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def test_the_alert_rules_pass_promtool_check(promtool):
    out = run(promtool, "check", "rules", ALERTS.name, cwd=ALERTS.parent)
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_each_alert_fires_on_its_unit_tests_and_stays_quiet_otherwise(promtool):
    run(promtool, "test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", ()):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for rule in rules():
        assert set(cases.get(rule["alert"], ())) == {True, False}, (
            f"{rule['alert']} needs a unit test where it fires and one where it is quiet"
        )


def test_the_alerts_asked_for_are_there():
    names = {rule["alert"] for rule in rules()}
    assert {
        "SchedulingBeatSilent",
        "SchedulingOutboxBacklog",
        "SchedulingTripsWaitingTooLong",
        "SchedulingHigh5xxRate",
        "SchedulingStreamLag",
    } <= names
    for rule in rules():
        assert rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]


def test_the_scrape_example_passes_promtool_check_config(promtool, tmp_path):
    """With its token file where it says (the copy points at one of the test's own)."""
    secret = tmp_path / "token"
    secret.write_text(TOKEN)
    config = yaml.safe_load(CONFIG.read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    text = CONFIG.read_text().replace(job["authorization"]["credentials_file"], str(secret))
    (tmp_path / "prometheus.yml").write_text(text)
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    out = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 1 rule files found" in out


def test_the_dashboard_loads_and_every_panel_has_an_expression():
    board = dashboard()
    assert board["title"] and board["uid"]
    panels = dashboard_panels()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and len(panels) >= 15
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert METRIC.search(target["expr"]), (panel["title"], target["expr"])


def test_the_dashboards_expressions_are_valid_promql(promtool, tmp_path):
    """Each one as a recording rule, for promtool to parse (Grafana's $__rate_interval
    stands for a range)."""
    recorded = [
        {"record": f"dashboard:expr_{n}", "expr": expr.replace("$__rate_interval", "5m")}
        for n, expr in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    run(promtool, "check", "rules", path.name, cwd=tmp_path)


@pytest.mark.django_db
def test_every_metric_named_in_deploy_is_served_and_every_served_one_is_on_the_dashboard(
    settings, desk
):
    """The names come from a real /metrics scrape after a request and a task run: the
    sample names where the scrape has samples, and for a family with none yet (a
    labelled metric nothing has touched in this process, e.g. the websocket counters
    outside daphne) the names its type gives it."""
    from scheduling import tasks  # noqa: F401  (registers the tasks)

    settings.METRICS_TOKEN = TOKEN
    assert api(desk).get("/api/appointments/").status_code == 200
    app.tasks["scheduling.sweep.expire_overdue"].apply()
    response = APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    served: set[str] = set()
    families: set[str] = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    for family in text_string_to_metric_families(response.content.decode()):
        if not family.name.startswith("scheduling_") or family.name.endswith("_created"):
            continue  # _created: prometheus_client's creation times (not in multi-process)
        families.add(family.name)
        served |= {sample.name for sample in family.samples}
        served |= {family.name + suffix for suffix in suffixes.get(family.type, [""])}
    assert "scheduling_http_request_duration_seconds_bucket" in served

    in_rules = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    in_dashboard = {name for expr in dashboard_expressions() for name in METRIC.findall(expr)}
    assert in_rules - served == set(), "alerts.yml names metrics /metrics does not serve"
    assert in_dashboard - served == set(), "the dashboard names metrics /metrics does not serve"
    on_dashboard = {
        family
        for family in families
        if any(name == family or name.startswith(family + "_") for name in in_dashboard)
    }
    assert families - on_dashboard == set(), "metrics served but not on the dashboard"
    other = {
        name
        for rule in rules()
        for name in re.findall(r"\b([a-z_]+)\{", rule["expr"])
        if not name.startswith("scheduling_")
    }
    assert other <= PROMETHEUS_SERIES
