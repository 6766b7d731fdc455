"""docs/grafana/memlaw_law.json asks only for metrics the results actor really exports.

The exported names come from the code (`results_actor.GAUGES`, `FAILED_GAUGE`, with the `ray_`
prefix Ray's exporter adds), never from a second list. tests/test_prometheus.py runs every panel's
query against a real Prometheus scraping a real actor and checks each one returns data.
"""

from __future__ import annotations

import json
import re

from conftest import REPO
from orchestrator.tune import results_actor as ra

DASHBOARD = REPO / "docs" / "grafana" / "memlaw_law.json"
METRIC = re.compile(r"\b(ray_[A-Za-z_:][A-Za-z0-9_:]*)")


def exported_metrics() -> set[str]:
    return {f"ray_{name}" for name in (*ra.GAUGES.values(), ra.FAILED_GAUGE)}


def panels(node: dict) -> list[dict]:
    """Every panel, rows' nested panels included."""
    out = []
    for panel in node.get("panels", []):
        out.append(panel)
        out.extend(panels(panel))
    return out


def panel_queries(dashboard: dict) -> dict[str, str]:
    """Panel title (with the target's refId) -> PromQL."""
    return {f"{p['title']} [{t['refId']}]": t["expr"] for p in panels(dashboard) for t in p.get("targets", [])}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_every_panel_queries_metrics_the_actor_exports():
    dashboard, exported = load(), exported_metrics()
    # Ray's exporter lower-cases metric names: a name with capitals would be scraped under another name
    assert all(name == name.lower() for name in exported), sorted(exported)
    queries = panel_queries(dashboard)
    assert len(queries) == len(panels(dashboard)) >= 8, "one query per panel: α, β, C, b, R², points, accepted, failed"
    used = set()
    for title, expr in queries.items():
        names = set(METRIC.findall(expr))
        assert names, f"{title}: names no metric: {expr}"
        assert names <= exported, f"{title}: {sorted(names - exported)} is not exported (exported: {sorted(exported)})"
        used |= names
    assert used == exported, f"no panel shows {sorted(exported - used)}"


def test_template_variables_and_datasource():
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("sweep", "group"):
        query = variables[name]["query"]["query"]
        assert set(METRIC.findall(query)) <= exported_metrics() and f", {name})" in query, query
    for title, expr in panel_queries(dashboard).items():
        assert 'sweep=~"$sweep"' in expr, f"{title} ignores the sweep selector"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels(dashboard))
