"""What docs/metrics.md and deploy/grafana/kubeinfer.json name, read the way the tests compare them with what the code
emits: the documented metric names by section, and the metric names in the dashboard's PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS_MD = ROOT / "docs" / "metrics.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "kubeinfer.json"

_ROW = re.compile(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(counter|gauge|histogram)\s*\|")
_NAME = re.compile(r"\b(kubeinfer_[a-z0-9_]+)")


def documented(path: Path = METRICS_MD) -> dict[str, dict[str, str]]:
    """``{section title: {name: type}}`` from the tables of docs/metrics.md (``## `` headings; a ``### `` heading
    stays in its section)."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        m = _ROW.match(line)
        if m:
            out.setdefault(section, {})[m.group(1)] = m.group(2)
    return out


def sample_names(families: dict[str, str]) -> set[str]:
    """The sample names a scrape has for ``{name: type}``: a histogram's ``_bucket``, ``_sum`` and ``_count``."""
    out: set[str] = set()
    for name, typ in families.items():
        out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if typ == "histogram" else {name}
    return out


def exposition_names(text: str) -> dict[str, str]:
    """``{name: type}`` of the families in a Prometheus text scrape, named as documented (a counter with its
    ``_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name + "_total" if fam.type == "counter" else fam.name] = fam.type
    return out


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """Every PromQL expression of the dashboard: the panels' targets and the template variables' queries."""
    doc = json.loads(path.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    for var in doc.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if var.get("type") == "query" and isinstance(q, str):
            exprs.append(q)
    return exprs


def dashboard_names(path: Path = DASHBOARD) -> set[str]:
    """The ``kubeinfer_*`` metric names the dashboard's PromQL reads (sample names: ``..._bucket`` as written)."""
    return {n for e in dashboard_exprs(path) for n in _NAME.findall(e)}
