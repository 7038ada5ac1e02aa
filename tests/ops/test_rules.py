"""Alert rules and example configs, checked by Debian's promtool and amtool."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
RULES = PROM / "vqa-monitor.rules.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package prometheus / prometheus-alertmanager)")
    return path


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_promtool_check_rules():
    out = _run(_tool("promtool"), "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    rules = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])  # helpers add rules at once
    assert rules >= 19 and f"SUCCESS: {rules} rules found" in out.stdout


def test_promtool_unit_tests():
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    out = _run(_tool("promtool"), "test", "rules", *map(str, tests))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_unit_tested_and_annotated():
    alerts = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = set()
    for path in (PROM / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert set(alerts) == tested
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name


def test_prometheus_example_config():
    out = _run(_tool("promtool"), "check", "config", str(PROM / "prometheus.example.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout


def test_alertmanager_example_config():
    out = _run(_tool("amtool"), "check-config", str(PROM / "alertmanager.example.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
