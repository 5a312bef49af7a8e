"""Helpers for the monitoring suites (standard library only): reading the
dashboards and rules, writing the live test's Prometheus and Alertmanager
configs, talking to nbserve and to Prometheus's HTTP API.

Used by tests/observability/ (the static and live suites) and
tests/fleet/test_fleet.py. The helpers that talk to servers collect what went
wrong in `failures` (a test compares its length before and after) instead of
raising, so one call can report several problems:

  cmd_prom_config(Namespace(out, rules, nbserve, prometheus, alertmanager, for_))
        the live test's Prometheus config and its copy of the rules (every group
        evaluated each second, `for_` = ["ALERT=DURATION", ...] overrides)
  am_config(webhook)                    alertmanager.yml posting to WEBHOOK/<receiver>
  http, prom_query, prom_scalar, prom_range, wait_prom, wait_recorded
  predict_all, feedback_all             /predict/batch and /feedback/batch in batches
  fleet_exprs, recorded_expr, rule_expr the dashboards' and rules' expressions
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASH_DIR = ROOT / "grafana" / "dashboards"
DS_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER_FILE = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
RULES_FILE = ROOT / "prometheus" / "alerts.yml"
AM_FILE = ROOT / "alertmanager.yml"
METRICS_PAGE = ROOT / "docs" / "reference" / "metrics.md"

# Dashboard file -> uid. Uids are part of the dashboards' URLs (bookmarks,
# links from alerts): they must not change.
EXPECTED_UIDS = {
    "nbserve-service.json": "nbserve-service",
    "nbserve-model.json": "nbserve-model",
    "nbserve-alerts.json": "nbserve-alerts",
    "nbserve-slo.json": "nbserve-slo",
}

# Every panel, variable and annotation queries the datasource the $datasource
# variable picks (its default is the provisioned uid).
DS_REF = "${datasource}"

# Dashboard queries that may legitimately return nothing in a healthy live
# test, keyed by (dashboard uid, panel title or "annotation:NAME", refId).
MAY_BE_EMPTY = {
    ("nbserve-alerts", "Firing alerts", "A"): "lists firing alerts: empty while nothing fires",
    ("nbserve-alerts", "Pending alerts", "A"): "lists pending alerts: empty while nothing is pending",
    ("nbserve-alerts", "Alerts over time", "A"): "empty until some alert has been pending or firing",
    ("nbserve-model", "Live F1 macro: champion vs challenger", "A"):
        "empty until a shadow-scored prediction is labelled (the shipped schema-2 model has no challenger)",
}

# Template/builtin variables -> the value used for the live evaluation.
# (job, instance and model are filled in by the test.)
BUILTIN_VARS = {
    "__rate_interval": "1m",
    "__interval": "5s",
    "__interval_ms": "5000",
    "__range": "5m",
    "__range_s": "300",
}

failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)


def load_dashboards() -> dict[str, dict]:
    out = {}
    for path in sorted(DASH_DIR.glob("*.json")):
        try:
            out[path.name] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            fail(f"{path}: invalid JSON: {e}")
    return out


def all_panels(dash: dict):
    for p in dash.get("panels", []):
        yield p
        for sub in p.get("panels", []) or []:
            yield sub


def dashboard_queries(dashboards: dict[str, dict]):
    """(uid, where, refId, expr) for every PromQL query in the dashboards."""
    for dash in dashboards.values():
        uid = dash.get("uid")
        for p in all_panels(dash):
            for t in p.get("targets", []) or []:
                if t.get("expr"):
                    yield uid, p.get("title", ""), t.get("refId", "?"), t["expr"]
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("expr"):
                yield uid, f"annotation:{a.get('name')}", "-", a["expr"]


def overlaps(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def alert_windows() -> dict[str, set[str]]:
    """alert name -> the range windows of its expression, with those of the
    recording rules it reads (so a mirror may use the recorded windows too)."""
    text = RULES_FILE.read_text()
    rules = re.findall(r"^      - (alert|record): (\S+)\n(.*?)(?=^      - (?:alert|record): |^  - name: |\Z)",
                       text, re.M | re.S)
    recorded = {name: body for kind, name, body in rules if kind == "record"}
    out: dict[str, set[str]] = {}
    for kind, name, body in rules:
        if kind != "alert":
            continue
        bodies = [body] + [b for r, b in recorded.items() if r in body]
        wins = out.setdefault(name, set())
        for b in bodies:
            wins.update(re.findall(r"\[(\d+[smhd])\]", b))
            wins.update(re.findall(r"offset (\d+[smhd])", b))
    return out


def contract_metrics() -> set[str]:
    text = METRICS_PAGE.read_text()
    names = set(re.findall(r"^\| `(nbserve_[a-z0-9_]+)` \|", text, re.M))
    if not names:
        fail(f"{METRICS_PAGE}: no metrics table")
    return names


# ------------------------------------------------------------ prom-config
def cmd_prom_config(args) -> int:
    out = Path(args.out)
    rules = Path(args.rules).read_text()
    # Every group at the global 1s: the long `interval:`s of the shipped rules
    # would delay the first recorded samples by up to a minute.
    rules = re.sub(r"(?m)^    interval: \S+\n", "", rules)
    for override in args.for_:
        name, dur = override.split("=", 1)
        pat = rf"(- alert: {re.escape(name)}\n(?:(?!      - ).*\n)*?        for: )\S+"
        rules, n = re.subn(pat, rf"\g<1>{dur}", rules)
        if n == 0:
            fail(f"prom-config: alert {name} with a `for:` not found in {args.rules}")
    rules_copy = out.with_name("rules.yml")
    rules_copy.write_text(rules)
    alerting = ""
    if args.alertmanager:
        alerting = (
            "alerting:\n"
            "  alertmanagers:\n"
            "    - static_configs:\n"
            f"        - targets: [{json.dumps(args.alertmanager)}]\n"
        )
    out.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        f"{alerting}"
        "rule_files:\n"
        f"  - {json.dumps(str(rules_copy.resolve()))}\n"
        "scrape_configs:\n"
        "  - job_name: nbserve\n"
        "    static_configs:\n"
        f"      - targets: [{', '.join(json.dumps(t) for t in args.nbserve)}]\n"
        "  - job_name: prometheus\n"
        "    static_configs:\n"
        f"      - targets: [{json.dumps(args.prometheus)}]\n"
    )
    return report()


# ----------------------------------------------------------------- HTTP
def http(method: str, url: str, body=None, headers=None, raw: bytes | None = None, timeout=10):
    """(status, parsed JSON or text)."""
    data = raw
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif raw is not None:
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, payload = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    try:
        return status, json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, payload.decode(errors="replace")


def prom_query(prom: str, expr: str, at: float | None = None):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(f"{prom}/api/v1/query", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return json.loads(e.read())
        except json.JSONDecodeError:
            return {"status": "error", "error": f"HTTP {e.code}"}


def metric_total(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------ live
def substitute(expr: str, values: dict[str, str]) -> str:
    def rep(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name.isdigit():  # a regex group reference ($1 in label_replace), as in Grafana
            return m.group(0)
        if name not in values:
            raise KeyError(name)
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", rep, expr)


def rules_from_prometheus(prom: str) -> list[tuple[str, str, str, str]]:
    """(group, name, expression, "alerting" | "recording") of every loaded rule."""
    st, body = http("GET", f"{prom}/api/v1/rules")
    if st != 200 or not isinstance(body, dict):
        fail(f"GET /api/v1/rules -> {st}")
        return []
    out = []
    for g in body["data"]["groups"]:
        for r in g["rules"]:
            out.append((g["name"], r.get("name", "?"), r["query"], r.get("type", "?")))
            if r.get("health") not in ("ok", None):
                fail(f"rule {r.get('name')}: health {r.get('health')}: {r.get('lastError')}")
    return out


def prom_range(prom: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    data = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                   "step": f"{step}"}).encode()
    req = urllib.request.Request(f"{prom}/api/v1/query_range", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = {"status": "error", "error": f"HTTP {e.code}: {e.read()[:200]!r}"}
    if body.get("status") != "success":
        fail(f"query_range {expr}: {body.get('error')}")
        return []
    return body["data"]["result"]


def grafana_annotation_events(series: list[dict], step_ms: float) -> list[tuple[str, float]]:
    """Grafana's Prometheus annotation processing with "series value as
    timestamp" (useValueForTime): each sample's value is an event time;
    consecutive ones within `step` merge into one event. (instance, time ms)."""
    events = []
    for s in series:
        last_end = None
        for _, v in s["values"]:
            t = math.floor(float(v))
            if last_end is not None and last_end + step_ms >= t:
                last_end = t
                continue
            events.append((s["metric"].get("instance", ""), t))
            last_end = t
    return events


def _rfc3339_seconds(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ----------------------------------------------------- batches, Prometheus
def read_csv(path: str) -> list[tuple[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def predict_all(base: str, texts: list[str], max_body: int = 1_500_000, max_items: int = 1000) -> list[dict]:
    """/predict/batch over all texts, in batches under the body and batch limits."""
    out: list[dict] = []
    batch: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if not batch:
            return
        st, body = http("POST", f"{base}/predict/batch", {"texts": batch}, timeout=120)
        if st != 200 or not isinstance(body, dict) or len(body.get("predictions") or []) != len(batch):
            fail(f"POST /predict/batch ({len(batch)} texts) -> {st} {str(body)[:200]}")
            raise SystemExit(report())
        out.extend(body["predictions"])
        batch, size = [], 0

    for t in texts:
        n = len(json.dumps(t).encode()) + 2
        if batch and (size + n > max_body or len(batch) >= max_items):
            flush()
        batch.append(t)
        size += n
    flush()
    return out


def feedback_all(base: str, pairs: list[tuple[str, str]], max_items: int = 1000) -> int:
    """/feedback/batch for (prediction_id, label) pairs; returns the accepted count."""
    accepted = 0
    for i in range(0, len(pairs), max_items):
        items = [{"prediction_id": pid, "label": lab} for pid, lab in pairs[i:i + max_items]]
        st, body = http("POST", f"{base}/feedback/batch", {"items": items}, timeout=60)
        if st != 202 or not isinstance(body, dict):
            fail(f"POST /feedback/batch ({len(items)} items) -> {st} {str(body)[:200]}")
            return accepted
        accepted += body.get("accepted", 0)
        if body.get("rejected"):
            bad = [r for r in body.get("results", []) if r.get("result") != "accepted"][:3]
            fail(f"POST /feedback/batch: {body['rejected']} rejected, e.g. {bad}")
    return accepted


def prom_scalar(prom: str, expr: str, at: float | None = None) -> float | None:
    res = prom_query(prom, expr, at).get("data", {}).get("result", [])
    return float(res[0]["value"][1]) if len(res) == 1 else None


def wait_prom(prom: str, expr: str, ok, timeout: float, what: str) -> float | None:
    """Polls `expr` until ok(value) or timeout; returns the last value."""
    deadline = time.time() + timeout
    while True:
        v = prom_scalar(prom, expr)
        if v is not None and ok(v):
            return v
        if time.time() > deadline:
            fail(f"{what}: after {timeout}s Prometheus has {expr} = {v}")
            return v
        time.sleep(0.5)


def recorded_expr(name: str) -> str:
    """The expression of recording rule `name` in the rules file."""
    m = re.search(rf"^      - record: {re.escape(name)}\n        expr: \|?\n?(.*?)(?=^      - |^  - name: |^\s*#|\Z)",
                  RULES_FILE.read_text(), re.M | re.S)
    if not m:
        fail(f"recording rule {name} not found in {RULES_FILE}")
        return "vector(0) == 1"
    return m.group(1).strip()


def wait_recorded(prom: str, timeout: float, what: str) -> None:
    """Waits until the fleet live-quality recording rules have been evaluated
    after now (so they include every sample scraped so far)."""
    since = time.time()
    wait_prom(prom, "min(timestamp(nbserve:feedback_labelled:increase1h))",
              lambda v: v > since, timeout, f"{what}: evaluation of the recording rules")


FLEET_PANELS = {"Live F1 macro (fleet)": "f1_macro",
                "Live balanced accuracy (fleet)": "balanced_accuracy",
                "Live accuracy (fleet)": "accuracy"}


def fleet_exprs(job: str, min_samples: int) -> dict[str, str]:
    """figure -> the model dashboard's fleet PromQL for it (window 1h)."""
    model = next((d for d in load_dashboards().values() if d.get("uid") == "nbserve-model"), {})
    out = {}
    for p in all_panels(model):
        fig = FLEET_PANELS.get(p.get("title"))
        if fig:
            out[fig] = substitute(p["targets"][0]["expr"], {"job": job, "model": ".*", "window": "1h",
                                                            "min_samples": str(min_samples), **BUILTIN_VARS})
    if len(out) != len(FLEET_PANELS):
        fail(f"nbserve-model: fleet panels found {sorted(out)}, expected {sorted(FLEET_PANELS.values())}")
    return out


def rule_expr(prom: str, name: str) -> str:
    """The expression of alert `name` as Prometheus loaded it (no `for`)."""
    for _, n, expr, _ in rules_from_prometheus(prom):
        if n == name:
            return expr
    fail(f"alert rule {name} not loaded")
    return "vector(0) == 1"


# ----------------------------------------------------------- alertmanager
def am_config(webhook: str) -> str:
    """alertmanager.yml for the live test: every receiver posts to
    WEBHOOK/<receiver>, with second-scale timings so deliveries come quickly."""
    text = AM_FILE.read_text()
    base = webhook.rstrip("/")
    text, n = re.subn(r"(?m)^(  - name: (\w+)\n    webhook_configs:\n      - url: )\S+",
                      lambda m: f"{m.group(1)}{base}/{m.group(2)}", text)
    receivers = re.findall(r"(?m)^  - name: (\w+)$", text)
    if n == 0 or n != len(receivers):
        raise ValueError(f"{AM_FILE.name}: {n} webhook urls replaced, receivers {receivers}")
    for key, val in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1m"),
                     ("resolve_timeout", "1m")):
        text = re.sub(rf"(?m)^(\s+{key}: )\S+", rf"\g<1>{val}", text)
    return text


def report() -> int:
    """1 if any helper reported a failure, else 0."""
    return 1 if failures else 0
