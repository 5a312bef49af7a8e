"""The monitoring files checked without running anything of ours:

- promtool (Debian's Prometheus package, scripts/install-prometheus.sh):
  `check config` on prometheus.yml (a copy with the container's layout, so
  the relative rule path resolves as it does there), `check rules` and `test
  rules` (the alert unit tests of prometheus/alerts_test.yml);
- amtool (scripts/install-alertmanager.sh): `check-config alertmanager.yml`;
- the Grafana provisioning and the dashboards' structure: stable uids, the
  $datasource/$job/$instance variables, panel ids and grid, units,
  datasources and queries, windows that follow $__rate_interval or mirror an
  alert rule, F1 thresholds taken from the gate; every metric of
  docs/reference/metrics.md shown somewhere and every alert documented in
  docs/monitoring.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import check
from conftest import ROOT

DASHBOARDS = sorted(check.DASH_DIR.glob("*.json"))
NAMES = [p.name for p in DASHBOARDS]


def run(*cmd) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True)


def passes(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


# ------------------------------------------------------------ promtool, amtool
def test_promtool_check_config(prometheus_bin, tmp_path, figures):
    # A copy with the same layout, so the relative rule path resolves the same
    # way it does in the container (/etc/prometheus/prometheus/alerts.yml).
    (tmp_path / "prometheus").mkdir()
    shutil.copy(ROOT / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(check.RULES_FILE, tmp_path / "prometheus" / "alerts.yml")
    passes(run(prometheus_bin / "promtool", "check", "config", tmp_path / "prometheus.yml"))
    figures("promtool", run(prometheus_bin / "promtool", "--version").stdout.splitlines()[0])


def test_promtool_check_rules(prometheus_bin):
    passes(run(prometheus_bin / "promtool", "check", "rules", "prometheus/alerts.yml"))


def test_promtool_test_rules_alert_unit_tests(prometheus_bin):
    passes(run(prometheus_bin / "promtool", "test", "rules", "prometheus/alerts_test.yml"))


def test_amtool_check_config(alertmanager_bin):
    passes(run(alertmanager_bin / "amtool", "check-config", "alertmanager.yml"))


def test_alertmanager_groups_and_inhibits_per_model():
    # Two models of one server burning their budgets are two notifications,
    # each naming its model; a page of one model never hides the other's ticket.
    text = (ROOT / "alertmanager.yml").read_text()
    group_by = re.search(r"^  group_by:\s*\[([^\]]*)\]", text, re.M)
    assert group_by and "model" in [g.strip() for g in group_by.group(1).split(",")], group_by
    page_over_ticket = re.search(
        r"source_matchers: \['severity=\"page\"'\]\s*\n\s*target_matchers: \['severity=\"ticket\"'\]\s*\n\s*equal: \[([^\]]*)\]",
        text,
    )
    assert page_over_ticket and "model" in [g.strip() for g in page_over_ticket.group(1).split(",")]


# ---------------------------------------------------------------- provisioning
def test_datasource_is_provisioned_once_on_the_compose_prometheus():
    text = check.DS_FILE.read_text()
    uids = re.findall(r"^\s*uid:\s*['\"]?([\w.-]+)['\"]?\s*$", text, re.M)
    assert len(uids) == 1, f"expected exactly one datasource uid, found {uids}"
    assert re.findall(r"^\s*url:\s*(\S+)", text, re.M) == ["http://prometheus:9090"]


def test_dashboard_provider_reads_the_mounted_dashboards():
    assert re.search(r"^\s*path:\s*/var/lib/grafana/dashboards\s*$", check.PROVIDER_FILE.read_text(), re.M)


def test_the_dashboards_are_the_expected_ones_with_stable_uids():
    # Uids are part of the dashboards' URLs (bookmarks, links from alerts): they must not change.
    assert {name: json.loads((check.DASH_DIR / name).read_text()).get("uid") for name in NAMES} == check.EXPECTED_UIDS


# ------------------------------------------------------------------ each dashboard
def dashboard(name: str) -> dict:
    return json.loads((check.DASH_DIR / name).read_text())


def panels(name: str) -> list[dict]:
    return list(check.all_panels(dashboard(name)))


def data_panels(name: str) -> list[dict]:
    # Rows only group panels; they show no data and have no unit.
    return [p for p in panels(name) if p.get("type") != "row"]


def where(name: str, p: dict) -> str:
    return f"{name} panel {p.get('id')} {p.get('title')!r}"


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_has_a_title_and_no_id(name):
    dash = dashboard(name)
    assert dash.get("title"), "no title"
    assert dash.get("id") is None, f"a provisioned dashboard must have id null/absent, got {dash.get('id')}"


def provisioned_uid() -> str:
    return re.findall(r"^\s*uid:\s*['\"]?([\w.-]+)['\"]?\s*$", check.DS_FILE.read_text(), re.M)[0]


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_datasource_variable_defaults_to_the_provisioned_datasource(name):
    # Every query goes through $datasource, so the dashboard imports into any
    # Grafana; provisioned here, its default is ours.
    dsv = {v.get("name"): v for v in dashboard(name).get("templating", {}).get("list", [])}.get("datasource") or {}
    assert dsv.get("type") == "datasource" and dsv.get("query") == "prometheus", dsv
    assert (dsv.get("current") or {}).get("value") == provisioned_uid(), dsv.get("current")


@pytest.mark.parametrize("var", ["job", "instance"])
@pytest.mark.parametrize("name", NAMES)
def test_dashboard_variable_is_a_label_values_query_on_the_datasource(name, var):
    v = {v.get("name"): v for v in dashboard(name).get("templating", {}).get("list", [])}.get(var)
    assert v, f"template variable ${var} missing"
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    assert v.get("type") == "query" and str(q).startswith("label_values("), (v.get("type"), q)
    assert (v.get("datasource") or {}).get("uid") == check.DS_REF, v.get("datasource")


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_annotations_query_the_datasource_variable(name):
    bad = [a.get("name") for a in dashboard(name).get("annotations", {}).get("list", [])
           if (a.get("datasource") or {}).get("uid") != check.DS_REF]
    assert not bad, f"annotations not on {check.DS_REF}: {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_panels_have_titles_and_unique_integer_ids(name):
    problems, ids = [], {}
    for p in panels(name):
        if not (p.get("title") or "").strip():
            problems.append(f"{where(name, p)}: no title")
        pid = p.get("id")
        if not isinstance(pid, int):
            problems.append(f"{where(name, p)}: id must be an integer")
        elif pid in ids:
            problems.append(f"{where(name, p)}: id {pid} also used by {ids[pid]!r}")
        else:
            ids[pid] = p.get("title")
    assert not problems, problems


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_panels_fit_the_24_column_grid_without_overlapping(name):
    problems, boxes = [], []
    for p in panels(name):
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"{where(name, p)}: gridPos needs integer x, y, w, h")
            continue
        if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24 or g["h"] < 1 or g["y"] < 0:
            problems.append(f"{where(name, p)}: gridPos {g} outside the 24-column grid")
        problems += [f"{where(name, p)}: gridPos {g} overlaps {t!r} {og}" for t, og in boxes if check.overlaps(g, og)]
        boxes.append((p.get("title"), g))
    assert not problems, problems


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_panels_have_a_unit(name):
    bad = [where(name, p) for p in data_panels(name) if not ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")]
    assert not bad, f"fieldConfig.defaults.unit missing: {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_panels_and_queries_use_the_datasource_variable(name):
    problems = []
    for p in data_panels(name):
        if (p.get("datasource") or {}).get("uid") != check.DS_REF:
            problems.append(f"{where(name, p)}: datasource uid {(p.get('datasource') or {}).get('uid')!r}")
        problems += [f"{where(name, p)} {t.get('refId')}: target datasource uid "
                     f"{(t.get('datasource') or {}).get('uid')!r}"
                     for t in p.get("targets") or [] if (t.get("datasource") or {}).get("uid") != check.DS_REF]
    assert not problems, problems


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_panels_have_queries_with_unique_ref_ids(name):
    problems = []
    for p in data_panels(name):
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where(name, p)}: no queries")
        refs = [t.get("refId") for t in targets]
        problems += [f"{where(name, p)}: duplicate refId {r}" for r in sorted({r for r in refs if refs.count(r) > 1})]
        problems += [f"{where(name, p)} {t.get('refId')}: empty expr" for t in targets
                     if not (t.get("expr") or "").strip()]
    assert not problems, problems


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_f1_thresholds_come_from_the_gate(name):
    # An F1 figure is judged against the gate, whatever the deployment
    # configures: no fixed threshold; colour a margin over
    # nbserve_gate_min_f1_macro instead (or take the gate as threshold).
    bad = []
    for p in data_panels(name):
        steps = (((p.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds") or {}).get("steps") or []
        fixed = [st.get("value") for st in steps if isinstance(st.get("value"), (int, float)) and 0 < st["value"] < 1]
        if "f1_macro" in json.dumps(p.get("targets") or []) and fixed and \
                "configFromData" not in json.dumps(p.get("transformations") or []):
            bad.append(f"{where(name, p)}: F1 threshold hard-coded at {fixed}")
    assert not bad, bad


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_fixed_windows_mirror_an_alert_rule(name):
    # A fixed window is right only where a panel mirrors an alert rule (title
    # "AlertName: ..."): it must then be a window of that rule, or the panel
    # shows something else than what fires. last_over_time(x[5m]) is a
    # lookback (the last sample, across failed scrapes), not a rate window.
    rule_windows = check.alert_windows()
    bad = []
    for p in data_panels(name):
        alert = (p.get("title") or "").split(":", 1)[0].strip()
        for t in p.get("targets") or []:
            scan = re.sub(r"last_over_time\(([^\[()]*)\[5m\]", r"last_over_time(\1", t.get("expr") or "")
            for win in re.findall(r"\[([^\]:]+)(?::[^\]]*)?\]", scan):
                if not win.startswith("$") and win not in rule_windows.get(alert, set()):
                    bad.append(f"{where(name, p)} {t.get('refId')}: fixed range [{win}] ({alert}: "
                               f"{sorted(rule_windows.get(alert, set())) or 'no such rule'})")
    assert not bad, "use $__rate_interval, or mirror an alert rule with one of its windows:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", [n for n in NAMES if check.EXPECTED_UIDS.get(n) != "nbserve-alerts"])
def test_dashboard_uses_rate_interval(name):
    assert "$__rate_interval" in json.dumps(dashboard(name))


def test_alerts_dashboard_panels_mirror_existing_rules_with_their_windows():
    # "AlertName: ..." panels mirror a rule: same windows as the rule (no
    # $__rate_interval), and the rule must exist.
    name = next(n for n, uid in check.EXPECTED_UIDS.items() if uid == "nbserve-alerts")
    rule_windows, bad = check.alert_windows(), []
    for p in data_panels(name):
        m = re.match(r"([A-Z]\w+):", p.get("title") or "")
        if not m:
            continue
        if m.group(1) not in rule_windows:
            bad.append(f"{p.get('title')!r}: mirrors no alert rule of {check.RULES_FILE.name}")
        if "$__rate_interval" in json.dumps(p.get("targets")):
            bad.append(f"{p.get('title')!r}: $__rate_interval in a mirror of a rule (use the rule's own windows)")
    assert not bad, bad


# ------------------------------------------------------------------ coverage
def test_dashboards_show_every_metric_of_the_contracts(figures):
    dashboards = {p.name: json.loads(p.read_text()) for p in DASHBOARDS}
    all_exprs = "\n".join(e for *_, e in check.dashboard_queries(dashboards))
    # ... directly or through a recording rule a dashboard reads (with every
    # value of the $window variable, which picks one of the recorded windows)
    shown = "\n".join(all_exprs.replace("$window", w) for w in ("15m", "1h", "6h", "24h"))
    records = re.findall(r"^      - record: (\S+)\n        expr: (.*?)(?=^      - |^  - name: |^\s*#|\Z)",
                         check.RULES_FILE.read_text(), re.M | re.S)
    for record, body in records:
        if re.search(rf"{re.escape(record)}(?![\w:])", shown):
            all_exprs += "\n" + body
    before = len(check.failures)
    metrics = check.contract_metrics()
    assert metrics and not check.failures[before:], check.failures[before:]
    missing = sorted(m for m in metrics if not re.search(rf"\b{m}(_bucket|_sum|_count)?\b", all_exprs))
    assert not missing, f"dashboards do not use these metrics of docs/reference/metrics.md: {', '.join(missing)}"
    alerts = re.findall(r"^\s*- alert:\s*(\w+)", check.RULES_FILE.read_text(), re.M)
    figures("static", f"{len(dashboards)} dashboards, {sum(len(panels(n)) for n in NAMES)} panels, "
                      f"{sum(1 for _ in check.dashboard_queries(dashboards))} queries, {len(alerts)} alerts, "
                      f"datasource uid {provisioned_uid()!r}")


def test_every_alert_has_a_runbook_entry():
    text = (ROOT / "docs" / "monitoring.md").read_text()
    alerts = re.findall(r"^\s*- alert:\s*(\w+)", check.RULES_FILE.read_text(), re.M)
    assert alerts and not [a for a in alerts if a not in text], [a for a in alerts if a not in text]


# Series that carry the `model` label (docs/reference/metrics.md; the live
# quality and SLO recordings keep it): each selector of one of these on a
# dashboard that has the $model variable must filter by it, or a panel mixes
# the repository's models whatever the viewer picked.
PER_MODEL_SERIES = re.compile(
    r"(nbserve_(?:http_requests_total|http_request_duration_seconds_(?:bucket|count|sum)|predictions_total"
    r"|prediction_(?:duration_seconds|confidence)_\w+|batch_size_\w+|oov_token_ratio_\w+"
    r"|model_(?:info|f1_macro|balanced_accuracy|accuracy|state|resident_bytes|polls_total|reloads_total"
    r"|created_timestamp_seconds|loaded_timestamp_seconds)|gate_(?:min_)?f1_macro|feedback_confusion_total|live_\w+)"
    r"|nbserve:(?:live_\w+|feedback_confusion|feedback_labelled|slo_\w+):\w+(?:\$window)?)\{([^}]*)\}")


@pytest.mark.parametrize("name", ["nbserve-model.json", "nbserve-service.json", "nbserve-slo.json"])
def test_dashboard_per_model_series_filter_by_the_model_variable(name):
    dash = dashboard(name)
    v = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}.get("model")
    assert v and v.get("type") == "query" and "model)" in str(v.get("query")), f"$model variable: {v}"
    assert v.get("includeAll") and v.get("allValue") == ".*", v
    problems = []
    for p in data_panels(name):
        for t in p.get("targets") or []:
            expr = t.get("expr") or ""
            problems += [f"{where(name, p)} {t.get('refId')}: {m.group(1)}{{{m.group(2)}}}"
                         for m in PER_MODEL_SERIES.finditer(expr) if 'model=~"$model"' not in m.group(2)]
            problems += [f"{where(name, p)} {t.get('refId')}: min by (job) of the SLO ratios drops model"
                         for _ in re.finditer(r"min by \(job\) \(\{__name__=~\"nbserve:slo_", expr)]
    assert not problems, problems


# ------------------------------------------------------------------ exemplars
def test_latency_panels_show_exemplars_linked_to_the_provisioned_trace_datasource():
    # Each time series of request-latency quantiles shows the trace-id
    # exemplars of one of its queries (one, so the points are not drawn twice)…
    problems = []
    for name in NAMES:
        for p in data_panels(name):
            latency = [t for t in p.get("targets") or []
                       if "histogram_quantile" in t.get("expr", "")
                       and "nbserve_http_request_duration_seconds_bucket" in t.get("expr", "")]
            if p.get("type") == "timeseries" and latency:
                shown = [t["refId"] for t in latency if t.get("exemplar") is True]
                if len(shown) != 1:
                    problems.append(f"{where(name, p)}: exemplars on {shown}")
    assert not problems, problems
    # …that the Prometheus datasource links to a provisioned trace datasource
    # (the files are flat YAML; no YAML parser in this suite's venv).
    def field(text: str, key: str) -> list[str]:
        return re.findall(rf"^\s*-?\s*{key}:\s*['\"]?([^'\"\s#]+)", text, re.M)

    prometheus = check.DS_FILE.read_text()
    assert field(prometheus, "name")[-1] == "trace_id", "exemplarTraceIdDestinations: name trace_id"
    (uid,) = field(prometheus, "datasourceUid")
    others = [f.read_text() for f in sorted(check.DS_FILE.parent.glob("*.y*ml")) if f != check.DS_FILE]
    (traces,) = [t for t in others if field(t, "uid") == [uid]]
    assert field(traces, "type")[0] in {"jaeger", "tempo"}, traces
    assert field(traces, "url") == ["http://jaeger:16686"], traces
