#!/usr/bin/env python3
"""Checks for nbserve's monitoring files (standard library only).

Used by scripts/test-observability.sh (and, for its dashboard and rule
expressions and Prometheus helpers, by tests/fleet/test_fleet.py):

  check.py static    structure of grafana/ dashboards and provisioning, and that
                     they cover every metric of docs/reference/metrics.md
  check.py prom-config --out F --rules R --nbserve H:P --prometheus H:P [--alertmanager H:P]
                     writes the Prometheus config of the live test and its copy of the
                     rules (every group evaluated each second, `--for ALERT=DUR` overrides)
  check.py traffic --url http://127.0.0.1:PORT --token T --sample tests/data/sample.csv
                     drives predictions, batches, bad requests, a reload and feedback
  check.py wait-scraped --prom URL --url URL
                     waits until Prometheus has scraped the traffic
  check.py live --prom URL
                     evaluates every PromQL expression of the dashboards and of the
                     loaded alert rules against the live Prometheus
  check.py replay --url URL --prom URL --data B.csv --offline E.json --model M.json
                     sends every document of a held-out split through /predict/batch and
                     its true label through /feedback/batch; live quality (/model/quality)
                     must equal the offline evaluation to 1e-9, the dashboards' fleet
                     PromQL over the confusion counters to 1e-6
  check.py am-config --out F --webhook URL
                     writes the live test's copy of alertmanager.yml: every receiver posts
                     to URL/<receiver>, second-scale timings
  check.py webhook --port-file F --log F
                     a webhook receiver: appends each notification (JSON) to F, one a line
  check.py wait-webhook --log F --alert NAME [--since T] [--timeout S]
                     waits until a firing NAME notification arrived; prints the delay
  check.py degrade --url URL --prom URL
                     wrong labels and one-class traffic: live F1 must fall and the
                     NbserveLiveF1BelowGate and NbserveLabelDrift expressions must be true

Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
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
CONTRACTS = ROOT / "docs" / "reference" / "metrics.md"

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
}

# Template/builtin variables -> the value used for the live evaluation.
# (job and instance are filled in from the command line.)
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
    print(f"FAIL: {msg}")


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


def provisioned_uid() -> str:
    text = DS_FILE.read_text()
    uids = re.findall(r"^\s*uid:\s*['\"]?([\w.-]+)['\"]?\s*$", text, re.M)
    if len(uids) != 1:
        fail(f"{DS_FILE}: expected exactly one datasource uid, found {uids}")
        return ""
    url = re.findall(r"^\s*url:\s*(\S+)", text, re.M)
    if url != ["http://prometheus:9090"]:
        fail(f"{DS_FILE}: datasource url should be http://prometheus:9090, got {url}")
    return uids[0]


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
    text = CONTRACTS.read_text()
    names = set(re.findall(r"^\| `(nbserve_[a-z0-9_]+)` \|", text, re.M))
    if not names:
        fail(f"{CONTRACTS}: no metrics table")
    return names


# ----------------------------------------------------------------- static
def cmd_static(_args) -> int:
    ds_uid = provisioned_uid()
    provider = PROVIDER_FILE.read_text()
    if not re.search(r"^\s*path:\s*/var/lib/grafana/dashboards\s*$", provider, re.M):
        fail(f"{PROVIDER_FILE}: provider path should be /var/lib/grafana/dashboards")

    dashboards = load_dashboards()
    rule_windows = alert_windows()
    if set(dashboards) != set(EXPECTED_UIDS):
        fail(f"{DASH_DIR}: expected dashboards {sorted(EXPECTED_UIDS)}, found {sorted(dashboards)}")
    seen_uids: dict[str, str] = {}
    n_panels = 0
    for name, dash in dashboards.items():
        where = f"{name}"
        uid = dash.get("uid")
        if EXPECTED_UIDS.get(name) != uid:
            fail(f"{where}: uid {uid!r}, expected the stable {EXPECTED_UIDS.get(name)!r}")
        if uid in seen_uids:
            fail(f"{where}: uid {uid!r} also used by {seen_uids[uid]}")
        seen_uids[uid] = name
        if not dash.get("title"):
            fail(f"{where}: no title")
        if dash.get("id") is not None:
            fail(f"{where}: a provisioned dashboard must have id null/absent, got {dash.get('id')}")

        # template variables; the datasource is one of them, so the dashboard
        # imports into any Grafana (provisioned here: its default is ours)
        tvars = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        dsv = tvars.get("datasource") or {}
        if dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
            fail(f"{where}: needs a $datasource variable of type datasource, query prometheus")
        elif (dsv.get("current") or {}).get("value") != ds_uid:
            fail(f"{where}: $datasource should default to the provisioned uid {ds_uid!r}")
        for var in ("job", "instance"):
            v = tvars.get(var)
            if not v:
                fail(f"{where}: template variable ${var} missing")
                continue
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if v.get("type") != "query" or not str(q).startswith("label_values("):
                fail(f"{where}: ${var} must be a label_values() query variable, got {v.get('type')} {q!r}")
            if (v.get("datasource") or {}).get("uid") != DS_REF:
                fail(f"{where}: ${var} datasource uid {(v.get('datasource') or {}).get('uid')!r} != {DS_REF!r}")
        for a in dash.get("annotations", {}).get("list", []):
            if (a.get("datasource") or {}).get("uid") != DS_REF:
                fail(f"{where}: annotation {a.get('name')!r} datasource is not {DS_REF!r}")

        # panels
        ids: dict[int, str] = {}
        boxes = []
        for p in all_panels(dash):
            n_panels += 1
            title = p.get("title") or ""
            pw = f"{where} panel {p.get('id')} {title!r}"
            if not title.strip():
                fail(f"{pw}: no title")
            pid = p.get("id")
            if not isinstance(pid, int):
                fail(f"{pw}: id must be an integer")
            elif pid in ids:
                fail(f"{pw}: id {pid} also used by {ids[pid]!r}")
            else:
                ids[pid] = title
            g = p.get("gridPos") or {}
            if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
                fail(f"{pw}: gridPos needs integer x, y, w, h")
            else:
                if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24 or g["h"] < 1 or g["y"] < 0:
                    fail(f"{pw}: gridPos {g} outside the 24-column grid")
                for other_title, og in boxes:
                    if overlaps(g, og):
                        fail(f"{pw}: gridPos {g} overlaps {other_title!r} {og}")
                boxes.append((title, g))
            if p.get("type") == "row":
                # rows only group panels; they show no data and have no unit
                continue
            unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
            if not unit:
                fail(f"{pw}: fieldConfig.defaults.unit missing")
            if (p.get("datasource") or {}).get("uid") != DS_REF:
                fail(f"{pw}: datasource uid {(p.get('datasource') or {}).get('uid')!r} != {DS_REF!r}")
            targets = p.get("targets") or []
            if not targets:
                fail(f"{pw}: no queries")
            # An F1 figure is judged against the gate, whatever the deployment
            # configures: no fixed threshold (it was 0.8); colour a margin over
            # nbserve_gate_min_f1_macro instead (or take the gate as threshold).
            steps = (((p.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds") or {}).get("steps") or []
            fixed = [st.get("value") for st in steps if isinstance(st.get("value"), (int, float))
                     and 0 < st["value"] < 1]
            if "f1_macro" in json.dumps(targets) and fixed and \
                    "configFromData" not in json.dumps(p.get("transformations") or []):
                fail(f"{pw}: F1 threshold hard-coded at {fixed}: take it from nbserve_gate_min_f1_macro")
            refs = set()
            for t in targets:
                if (t.get("datasource") or {}).get("uid") != DS_REF:
                    fail(f"{pw} {t.get('refId')}: target datasource uid is not {DS_REF!r}")
                if t.get("refId") in refs:
                    fail(f"{pw}: duplicate refId {t.get('refId')}")
                refs.add(t.get("refId"))
                expr = t.get("expr") or ""
                if not expr.strip():
                    fail(f"{pw} {t.get('refId')}: empty expr")
                # last_over_time(x[5m]) is a lookback (the last sample, across
                # failed scrapes), not a rate window: not subject to the rule below
                scan = re.sub(r"last_over_time\(([^\[()]*)\[5m\]", r"last_over_time(\1", expr)
                for win in re.findall(r"\[([^\]:]+)(?::[^\]]*)?\]", scan):
                    if win.startswith("$"):
                        continue
                    # A fixed window is right only where a panel mirrors an alert
                    # rule (title "AlertName: ..."): it must then be a window of
                    # that rule, or the panel shows something else than what fires.
                    alert = title.split(":", 1)[0].strip()
                    if win not in rule_windows.get(alert, set()):
                        fail(f"{pw} {t.get('refId')}: fixed range [{win}]: use $__rate_interval, or "
                             f"mirror an alert rule with one of its windows ({alert}: "
                             f"{sorted(rule_windows.get(alert, set())) or 'no such rule'})")
        if uid != "nbserve-alerts" and "$__rate_interval" not in json.dumps(dash):
            fail(f"{where}: does not use $__rate_interval")
        if uid == "nbserve-alerts":
            # "AlertName: ..." panels mirror a rule: same windows as the rule
            # (no $__rate_interval), and the rule must exist.
            for p in all_panels(dash):
                m = re.match(r"([A-Z]\w+):", p.get("title") or "")
                if not m or p.get("type") == "row":
                    continue
                if m.group(1) not in rule_windows:
                    fail(f"{where} panel {p.get('title')!r}: mirrors no alert rule of {RULES_FILE.name}")
                if "$__rate_interval" in json.dumps(p.get("targets")):
                    fail(f"{where} panel {p.get('title')!r}: $__rate_interval in a mirror of a rule "
                         "(use the rule's own windows)")

    # every contract metric is shown somewhere
    all_exprs = "\n".join(e for *_, e in dashboard_queries(dashboards))
    # ... directly or through a recording rule a dashboard reads (with every
    # value of the $window variable, which picks one of the recorded windows)
    windows = ["15m", "1h", "6h", "24h"]
    shown = "\n".join(all_exprs.replace("$window", w) for w in windows)
    records = re.findall(r"^      - record: (\S+)\n        expr: (.*?)(?=^      - |^  - name: |^\s*#|\Z)",
                         RULES_FILE.read_text(), re.M | re.S)
    for name, body in records:
        if re.search(rf"{re.escape(name)}(?![\w:])", shown):
            all_exprs += "\n" + body
    missing = sorted(m for m in contract_metrics() if not re.search(rf"\b{m}(_bucket|_sum|_count)?\b", all_exprs))
    if missing:
        fail(f"dashboards do not use these metrics of docs/reference/metrics.md: {', '.join(missing)}")

    # every alert in the rules has a runbook entry in docs/monitoring.md
    alerts = re.findall(r"^\s*- alert:\s*(\w+)", RULES_FILE.read_text(), re.M)
    mon = ROOT / "docs" / "monitoring.md"
    if mon.exists():
        text = mon.read_text()
        for a in alerts:
            if a not in text:
                fail(f"{mon}: alert {a} is not documented")

    n_q = sum(1 for _ in dashboard_queries(dashboards))
    print(f"static: {len(dashboards)} dashboards, {n_panels} panels, {n_q} queries, "
          f"{len(alerts)} alerts, datasource uid {ds_uid!r}")
    return report()


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


# --------------------------------------------------------------- traffic
def cmd_traffic(args) -> int:
    base = args.url.rstrip("/")
    auth = {"Authorization": f"Bearer {args.token}"}
    with open(args.sample, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[str]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r["text"])
    labels = sorted(by_label)
    if len(labels) < 2:
        fail(f"{args.sample}: expected at least two labels, got {labels}")
        return report()
    n = args.per_class
    docs = [(lab, t) for lab in labels for t in by_label[lab][:n]]
    counts: dict[str, int] = {}

    def expect(what: str, status: int, ok, body=None, code: str | None = None) -> None:
        counts[what] = counts.get(what, 0) + 1
        if not ok(status):
            fail(f"traffic: {what}: unexpected status {status}")
        if code is not None:
            got = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
            if got != code:
                fail(f"traffic: {what}: error code {got!r}, documented {code!r}")

    predicted: list[tuple[str, str, str]] = []  # (prediction_id, true label, predicted label)
    for lab, text in docs:
        st, body = http("POST", f"{base}/predict", {"text": text})
        expect("POST /predict", st, lambda s: s == 200)
        if st == 200 and isinstance(body, dict):
            pid = body.get("prediction_id")
            if not pid:
                fail(f"traffic: /predict answer has no prediction_id: {str(body)[:200]}")
            else:
                predicted.append((pid, lab, body.get("label")))
    predicted_labels = sorted({p for *_, p in predicted})
    print(f"traffic: {len(predicted)} single predictions, predicted labels {predicted_labels}")
    if len(predicted_labels) < 2:
        fail(f"traffic: predictions cover only {predicted_labels}; expected both classes")

    for size in (1, 5, 20):
        batch = [t for _, t in docs[:size]]
        st, body = http("POST", f"{base}/predict/batch", {"texts": batch})
        expect("POST /predict/batch", st, lambda s: s == 200)
        if st == 200 and isinstance(body, dict):
            for i, item in enumerate(body.get("predictions") or []):
                if isinstance(item, dict) and item.get("prediction_id"):
                    predicted.append((item["prediction_id"], docs[i][0], item.get("label")))

    # client errors: malformed JSON, schema violations, unknown routes, no token
    st, _ = http("POST", f"{base}/predict", raw=b"{not json")
    expect("malformed JSON", st, lambda s: s == 400)
    st, _ = http("POST", f"{base}/predict", {"txt": "missing field"})
    expect("missing field", st, lambda s: s == 422)
    st, body = http("POST", f"{base}/predict/batch", {"texts": []})
    expect("empty batch", st, lambda s: s == 422, body, "empty_batch")
    st, body = http("GET", f"{base}/no/such/route")
    expect("unknown route", st, lambda s: s == 404, body, "not_found")
    # admin.token is set: a request without it is unauthorized (403 would mean admin is off)
    st, body = http("POST", f"{base}/admin/reload")
    expect("reload without token", st, lambda s: s == 401, body, "unauthorized")
    for path in ("/health", "/ready", "/model", "/model/quality"):
        st, _ = http("GET", f"{base}{path}")
        expect(f"GET {path}", st, lambda s: s == 200)

    # a reload of the same model: success, a model annotation, a new load time
    st, body = http("POST", f"{base}/admin/reload", headers=auth)
    expect("POST /admin/reload", st, lambda s: s == 200)
    print(f"traffic: reload -> {st} {str(body)[:160]}")
    if args.broken_model:
        # a reload that fails (invalid artifact): nbserve_model_reloads_total{result="failure"}
        # goes up and NbserveModelReloadFailing (no `for`) must fire
        st, body = http("POST", f"{base}/admin/reload", {"path": args.broken_model}, headers=auth)
        expect("failing POST /admin/reload", st, lambda s: s == 422)
        print(f"traffic: failing reload -> {st} {str(body)[:160]}")

    # feedback in two rounds, so counters change between scrapes; true labels
    # from the sample, i.e. live quality equals the model's quality on it
    half = len(predicted) // 2
    for i, (pid, lab, _) in enumerate(predicted):
        if i == half:
            time.sleep(args.pause)
        st, _ = http("POST", f"{base}/feedback", {"prediction_id": pid, "label": lab})
        expect("POST /feedback", st, lambda s: 200 <= s < 300)
    # feedback that is refused
    st, body = http("POST", f"{base}/feedback", {"prediction_id": predicted[0][0], "label": predicted[0][1]})
    expect("duplicate feedback", st, lambda s: s == 409, body, "duplicate_feedback")
    st, body = http("POST", f"{base}/feedback", {"prediction_id": "00000000-0000-0000-0000-000000000000", "label": labels[0]})
    expect("unknown prediction_id", st, lambda s: s == 404, body, "unknown_prediction")
    st, body = http("POST", f"{base}/feedback", {"prediction_id": predicted[1][0], "label": "no-such-label"})
    expect("invalid label", st, lambda s: s == 422, body, "invalid_label")

    if args.examples:
        # labelled examples (feedback.accept_examples): single and batch forms
        # are accepted, an unknown label is refused (counted by result)
        for lab in labels:
            st, body = http("POST", f"{base}/examples", {"text": by_label[lab][0], "label": lab})
            expect("POST /examples", st, lambda s: s == 200)
        st, body = http("POST", f"{base}/examples",
                        {"examples": [{"text": by_label[lab][1], "label": lab} for lab in labels]})
        expect("POST /examples (batch)", st, lambda s: s == 200)
        if st == 200 and (not isinstance(body, dict) or body.get("accepted") != len(labels)):
            fail(f"traffic: POST /examples batch of {len(labels)}: {str(body)[:200]}")
        st, body = http("POST", f"{base}/examples", {"text": "some text", "label": "no-such-label"})
        expect("example with an unknown label", st, lambda s: s == 422, body, "invalid_label")

    # a second round of predictions after a pause so rates span several scrapes
    time.sleep(args.pause)
    for lab, text in docs[: 2 * n : 2]:
        st, _ = http("POST", f"{base}/predict", {"text": text})
        expect("POST /predict", st, lambda s: s == 200)
    print("traffic: " + ", ".join(f"{k} x{v}" for k, v in counts.items()))
    return report()


def metric_total(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cmd_wait_scraped(args) -> int:
    """Waits until Prometheus holds the server's current request and feedback counts."""
    base = args.url.rstrip("/")
    st, text = http("GET", f"{base}/metrics")
    if st != 200:
        fail(f"GET /metrics -> {st}")
        return report()
    want = {m: metric_total(text, m) for m in
            ("nbserve_feedback_total", "nbserve_predictions_total", "nbserve_model_reloads_total")}
    deadline = time.time() + args.timeout
    while True:
        got = {}
        for m in want:
            r = prom_query(args.prom, f'sum({m}{{job="nbserve"}})')
            res = r.get("data", {}).get("result", [])
            got[m] = float(res[0]["value"][1]) if res else -1
        if all(got[m] >= want[m] for m in want):
            print(f"wait-scraped: Prometheus has {got}")
            # let the rules evaluate on the new samples
            time.sleep(args.settle)
            return report()
        if time.time() > deadline:
            fail(f"wait-scraped: after {args.timeout}s Prometheus has {got}, server {want}")
            return report()
        time.sleep(0.5)


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


def check_events(prom: str, dashboards: dict[str, dict], values: dict[str, str], since: float) -> int:
    """Draws the annotation, the confidence heatmap and the reload bars of the
    dashboards as Grafana would (range query, step S, $__rate_interval =
    max(S + scrape, 4 x scrape)) over the whole test and compares them with the
    events that really happened: each must be drawn exactly once.

    Event panels draw the counter's last value minus its last value one step
    earlier (last_over_time, so a failed scrape's staleness does not cut the
    chain): the steps telescope, so a range adds up to exactly the events in
    it at any step. Drawn here with a 2s step (scrapes every 1s), where an increase over
    $__rate_interval (4s) would count each event about twice.
    """
    scrape, step = 1.0, 2.0
    v = dict(values, __interval=f"{step:g}s", __interval_ms=f"{step * 1000:g}",
             __rate_interval=f"{max(step + scrape, 4 * scrape):g}s")
    # a few seconds past now so the last events' windows are all evaluated
    start, end = math.floor(since / step) * step, time.time() + 8
    checked = 0
    loads = {}
    for r in prom_range(prom, 'nbserve_model_loaded_timestamp_seconds{job="%s"}' % values["job"], start, end, step):
        loads.setdefault(r["metric"].get("instance", ""), set()).update(float(x) for _, x in r["values"])
    reloads_ok = prom_scalar(prom, 'sum(nbserve_model_reloads_total{job="%s", result="success"})' % values["job"])
    for dash in dashboards.values():
        for a in dash.get("annotations", {}).get("list", []):
            if not a.get("expr"):
                continue
            if not a.get("useValueForTime"):
                fail(f"{dash['uid']} annotation {a.get('name')!r}: not drawn from the load time itself "
                     "(useValueForTime), so it depends on the step")
                continue
            series = prom_range(prom, substitute(a["expr"], v), start, end, step)
            events = grafana_annotation_events(series, step * 1000)
            want = sorted((inst, math.floor(t * 1000)) for inst, ts in loads.items() for t in ts)
            checked += 1
            # the start plus each successful reload, once each, at its time
            if sorted(events) != want or len(want) != 1 + int(reloads_ok or 0):
                fail(f"{dash['uid']} annotation {a.get('name')!r}: events {sorted(events)}, "
                     f"loads {want} (1 + {reloads_ok} successful reloads)")
            else:
                print(f"live: {dash['uid']} annotation {a.get('name')!r}: {len(events)} events = "
                      f"start + {reloads_ok:.0f} reload(s), at the load times")
    model = next((d for d in dashboards.values() if d.get("uid") == "nbserve-model"), {})
    truth = {
        "Prediction confidence": ('sum(nbserve_prediction_confidence_count{job="%s"})' % values["job"],
                                  lambda r: r["metric"].get("le") == "+Inf"),
        "Model reloads by result": ('sum(nbserve_model_reloads_total{job="%s"})' % values["job"], lambda r: True),
    }
    for p in all_panels(model):
        if p.get("title") not in truth:
            continue
        total_expr, pick = truth.pop(p["title"])
        expr = substitute(p["targets"][0]["expr"], v)
        drawn = sum(float(x) for r in prom_range(prom, expr, start, end, step) if pick(r)
                    for _, x in r["values"] if x not in ("NaN", "+Inf", "-Inf"))
        happened = (prom_scalar(prom, total_expr) or 0) - (prom_scalar(prom, total_expr, since) or 0)
        # what the old increase([$__rate_interval]) at the same step drew
        sel = re.search(r"(nbserve_\w+\{[^}]*\})", expr).group(1)
        by = re.search(r"sum by \((\w+)\)", expr).group(1)
        old_expr = f"sum by ({by}) (increase({sel}[{v['__rate_interval']}]))"
        old = sum(float(x) for r in prom_range(prom, old_expr, start, end, step) if pick(r)
                  for _, x in r["values"] if x not in ("NaN", "+Inf", "-Inf"))
        checked += 1
        ratio = drawn / happened if happened else math.nan
        print(f"live: {p['title']!r}: {drawn:.1f} events drawn over the test for {happened:.0f} that happened "
              f"(x{ratio:.3f}; increase([$__rate_interval]) per step would draw x{old / happened if happened else math.nan:.2f})")
        if not (happened > 0 and abs(ratio - 1) <= 0.01):
            fail(f"{p['title']!r}: draws {drawn:.1f} events for {happened:.0f}: each must be drawn once")
    if truth:
        fail(f"nbserve-model: panels not found: {sorted(truth)}")
    return checked


def check_lifecycle(prom: str, model: dict, args, now: float) -> int:
    """The Model lifecycle row shows what the server really holds: the model
    age is now minus the served artifact's created_at, one version is served,
    and (with --examples N) the accepted examples and kept text arrived."""
    values = {"job": args.job, "instance": args.instance, **BUILTIN_VARS}
    panels = {p.get("title"): p for p in all_panels(model)}
    checked = 0

    def panel_values(title: str) -> list[float]:
        p = panels.get(title)
        if not p:
            fail(f"nbserve-model: panel {title!r} not found")
            return []
        res = prom_query(prom, substitute(p["targets"][0]["expr"], values), now).get("data", {}).get("result", [])
        return [float(r["value"][1]) for r in res]

    created = json.loads(Path(args.model_file).read_text())["created_at"]
    created_s = _rfc3339_seconds(created)
    ages = panel_values("Model age per instance")
    checked += 1
    want = now - created_s
    if len(ages) != 1 or abs(ages[0] - want) > 0.01:
        fail(f"'Model age per instance' shows {ages}, the served artifact ({created}) is {want:.3f}s old")
    else:
        print(f"live: 'Model age per instance' = {ages[0]:.3f}s = now - created_at {created}")
    versions = panel_values("Distinct model versions served")
    checked += 1
    if versions != [1.0]:
        fail(f"'Distinct model versions served' shows {versions}, one process serves one version")
    if args.examples:
        accepted = prom_scalar(prom, 'sum(nbserve_examples_total{job="%s", result="accepted"})' % args.job, now)
        refused = prom_scalar(prom, 'sum(nbserve_examples_total{job="%s", result="invalid_label"})' % args.job, now)
        kept = panel_values("Kept prediction text")
        checked += 3
        if accepted != args.examples or refused != 1:
            fail(f"nbserve_examples_total: accepted {accepted} (sent {args.examples}), invalid_label {refused} (sent 1)")
        elif not (len(kept) == 1 and kept[0] > 0):
            fail(f"'Kept prediction text' shows {kept}: feedback.keep_text is on and predictions were made")
        else:
            print(f"live: examples accepted {accepted:.0f}, refused 1; kept prediction text {kept[0]:.0f} bytes")
    return checked


def _rfc3339_seconds(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def cmd_live(args) -> int:
    started = time.monotonic()
    prom = args.prom.rstrip("/")
    dashboards = load_dashboards()
    now = time.time()
    evaluated = 0
    empty_allowed = []
    nan_results = []

    # alert rules, as Prometheus loaded them
    rules = rules_from_prometheus(prom)
    in_file = re.findall(r"^\s*- alert:\s*(\w+)", RULES_FILE.read_text(), re.M)
    loaded = sorted(n for _, n, _, kind in rules if kind == "alerting")
    if loaded != sorted(in_file):
        fail(f"Prometheus loaded alerts {loaded}, file has {sorted(in_file)}")
    with_data = 0
    for group, name, expr, _ in rules:
        r = prom_query(prom, expr, now)
        evaluated += 1
        if r.get("status") != "success":
            fail(f"rule {group}/{name}: {r.get('errorType')}: {r.get('error')}")
            continue
        if r["data"]["result"]:
            with_data += 1
    print(f"live: {len(rules)} rule expressions valid, {with_data} currently with a result")

    # dashboards
    for dash in dashboards.values():
        uid = dash["uid"]
        values = dict(BUILTIN_VARS)
        for v in dash.get("templating", {}).get("list", []):
            cur = (v.get("current") or {}).get("value")
            if isinstance(cur, list):
                cur = cur[0] if cur else ""
            values[v["name"]] = cur or ""
        values["job"] = args.job
        values["instance"] = args.instance
        values["min_samples"] = str(args.min_samples)
        # template variable queries: label_values(selector, label)
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", str(q or "").strip(), re.S)
            if v.get("type") != "query" or not m:
                continue
            expr = f"count by ({m.group(2)}) ({substitute(m.group(1), values)})"
            r = prom_query(prom, expr, now)
            evaluated += 1
            if r.get("status") != "success":
                fail(f"{uid} variable ${v['name']}: {r.get('error')}")
            elif not r["data"]["result"]:
                fail(f"{uid} variable ${v['name']}: {q} has no values")
        for _, where, ref, raw in [q for q in dashboard_queries({uid: dash})]:
            try:
                expr = substitute(raw, values)
            except KeyError as e:
                fail(f"{uid} {where!r} {ref}: unknown variable ${e.args[0]}")
                continue
            r = prom_query(prom, expr, now)
            evaluated += 1
            label = f"{uid} {where!r} {ref}"
            if r.get("status") != "success":
                fail(f"{label}: {r.get('errorType')}: {r.get('error')}\n    {expr}")
                continue
            result = r["data"]["result"]
            if not result:
                reason = MAY_BE_EMPTY.get((uid, where, ref))
                if reason:
                    empty_allowed.append(f"{label} ({reason})")
                else:
                    fail(f"{label}: no data\n    {expr}")
                continue
            vals = [s["value"][1] for s in result] if r["data"]["resultType"] == "vector" else []
            if vals and all(v in ("NaN", "+Inf", "-Inf") for v in vals):
                # The docs promise every panel shows data after the traffic:
                # a ratio with nothing behind it is no data either.
                nan_results.append(label)
                fail(f"{label}: only NaN/Inf ({vals[:4]}): no data behind it\n    {expr}")
    for e in empty_allowed:
        print(f"live: allowed empty: {e}")
    print(f"live: {len(nan_results)} dashboard queries with only NaN/Inf")
    # The fleet-wide live metrics computed in PromQL from the confusion
    # counters must equal the server's own live gauges (one process, all of
    # the test's feedback inside its window).
    model = next((d for d in dashboards.values() if d.get("uid") == "nbserve-model"), None)
    pairs = {"Live F1 macro (fleet)": "nbserve_live_f1_macro",
             "Live balanced accuracy (fleet)": "nbserve_live_balanced_accuracy",
             "Live accuracy (fleet)": "nbserve_live_accuracy"}
    for p in all_panels(model or {}):
        gauge = pairs.pop(p.get("title"), None)
        if not gauge:
            continue
        expr = substitute(p["targets"][0]["expr"], {"job": args.job, "window": "1h",
                                                    "min_samples": str(args.min_samples), **BUILTIN_VARS})
        a = prom_query(prom, expr, now).get("data", {}).get("result", [])
        b = prom_query(prom, f'max({gauge}{{job="{args.job}"}})', now).get("data", {}).get("result", [])
        evaluated += 2
        if len(a) != 1 or len(b) != 1:
            fail(f"{p['title']}: expected one value each from PromQL and {gauge}, got {a} / {b}")
            continue
        va, vb = float(a[0]["value"][1]), float(b[0]["value"][1])
        if not (abs(va - vb) <= 1e-6):
            fail(f"{p['title']}: PromQL from nbserve_feedback_confusion_total gives {va:.6f}, "
                 f"the server's {gauge} {vb:.6f}")
        else:
            print(f"live: {p['title']} = {va:.4f} = {gauge}")
    if pairs:
        fail(f"nbserve-model: panels not found: {sorted(pairs)}")
    if args.model_file:
        evaluated += check_lifecycle(prom, model or {}, args, now)
    if args.since:
        evaluated += check_events(prom, dashboards, {"job": args.job, "instance": args.instance, **BUILTIN_VARS},
                                  args.since)
    if args.expect_firing:
        # Prometheus evaluates the rules on its own schedule: poll to a deadline.
        want = set(args.expect_firing)
        deadline = time.monotonic() + args.timeout
        while True:
            r = prom_query(prom, 'ALERTS{alertstate="firing"}', time.time())
            firing = {s["metric"]["alertname"] for s in r.get("data", {}).get("result", [])}
            if want <= firing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"live: firing alerts: {sorted(firing) or 'none'}")
        for a in sorted(want - firing):
            fail(f"expected alert {a} to fire (not firing after {args.timeout}s)")
    elapsed = time.monotonic() - started
    print(f"live: evaluated {evaluated} PromQL expressions in {elapsed:.1f}s")
    return report()



# ---------------------------------------------------------------- replay
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
            out[fig] = substitute(p["targets"][0]["expr"], {"job": job, "window": "1h",
                                                            "min_samples": str(min_samples), **BUILTIN_VARS})
    if len(out) != len(FLEET_PANELS):
        fail(f"nbserve-model: fleet panels found {sorted(out)}, expected {sorted(FLEET_PANELS.values())}")
    return out


def cmd_replay(args) -> int:
    started = time.monotonic()
    base = args.url.rstrip("/")
    prom = args.prom.rstrip("/")
    rows = read_csv(args.data)
    offline = json.loads(Path(args.offline).read_text())
    stored = json.loads(Path(args.model).read_text())["evaluation"]
    st, served = http("GET", f"{base}/model")
    served_eval = served.get("evaluation", {}) if st == 200 and isinstance(served, dict) else {}
    figures = ("f1_macro", "balanced_accuracy", "accuracy")
    # The split is the one the artifact was evaluated on: same figures.
    for fig in figures:
        for what, d in (("the artifact's stored evaluation", stored), ("GET /model evaluation", served_eval)):
            if not abs(d.get(fig, math.nan) - offline[fig]) <= 1e-9:
                fail(f"replay: {what} {fig} {d.get(fig)} != offline {offline[fig]} (not the held-out split?)")
    if offline.get("documents") != len(rows):
        fail(f"replay: offline evaluation has {offline.get('documents')} documents, {args.data} {len(rows)}")

    st, q0 = http("GET", f"{base}/model/quality")
    if st != 200 or q0.get("samples") != 0:
        fail(f"replay: expected an empty live window before the replay, got {st} {str(q0)[:200]}")
    if q0.get("window_size", 0) < len(rows):
        fail(f"replay: feedback.window {q0.get('window_size')} < {len(rows)} documents")
    preds = predict_all(base, [t for t, _ in rows])
    accepted = feedback_all(base, [(p["prediction_id"], lab) for p, (_, lab) in zip(preds, rows)])
    t_sent = time.monotonic() - started
    if accepted != len(rows):
        fail(f"replay: {accepted} of {len(rows)} feedback items accepted")
    st, q = http("GET", f"{base}/model/quality")
    live = (q.get("live") or {}) if isinstance(q, dict) else {}
    if q.get("samples") != len(rows):
        fail(f"replay: /model/quality samples {q.get('samples')}, expected {len(rows)}")
    print(f"replay: {len(rows)} documents of {Path(args.data).name} predicted and labelled in {t_sent:.1f}s")
    for fig in figures:
        v, o = live.get(fig, math.nan), offline[fig]
        ok = abs(v - o) <= 1e-9
        print(f"replay: live {fig} {v!r} {'==' if ok else '!='} offline {o!r} (|d| {abs(v - o):.1e})")
        if not ok:
            fail(f"replay: /model/quality live {fig} {v} != offline {o}")

    # Fleet PromQL (the dashboard's expressions over nbserve_feedback_confusion_total)
    # once Prometheus has scraped all of the replay's feedback.
    wait_prom(prom, f'sum(nbserve_feedback_confusion_total{{job="{args.job}"}})',
              lambda v: v >= len(rows), args.timeout, "replay: scrape of the feedback counters")
    wait_recorded(prom, args.timeout, "replay")
    now = time.time()
    for fig, expr in fleet_exprs(args.job, args.min_samples).items():
        v, o = prom_scalar(prom, expr, now), offline[fig]
        if v is None:
            fail(f"replay: fleet {fig}: no single value from\n    {expr}")
            continue
        ok = abs(v - o) <= 1e-6
        print(f"replay: PromQL fleet {fig} {v!r} {'==' if ok else '!='} offline {o!r} (|d| {abs(v - o):.1e})")
        if not ok:
            fail(f"replay: PromQL fleet {fig} {v} != offline {o}")
    print(f"replay: done in {time.monotonic() - started:.1f}s")
    return report()


# --------------------------------------------------------------- degrade
def rule_expr(prom: str, name: str) -> str:
    """The expression of alert `name` as Prometheus loaded it (no `for`)."""
    for _, n, expr, _ in rules_from_prometheus(prom):
        if n == name:
            return expr
    fail(f"alert rule {name} not loaded")
    return "vector(0) == 1"


def cmd_degrade(args) -> int:
    started = time.monotonic()
    base = args.url.rstrip("/")
    prom = args.prom.rstrip("/")
    rows = read_csv(args.data)
    st, q0 = http("GET", f"{base}/model/quality")
    st, model = http("GET", f"{base}/model")
    classes, gate = model["classes"], model["gate_min_f1_macro"]
    f1_before = (q0.get("live") or {}).get("f1_macro")
    fleet = fleet_exprs(args.job, args.min_samples)["f1_macro"]
    fleet_before = prom_scalar(prom, fleet)

    # 1. Wrong labels: each prediction gets a class it was not predicted as.
    # spread over the file (a split may list one class first)
    texts = [t for t, _ in rows[:: max(1, len(rows) // args.wrong)][: args.wrong]]
    preds = predict_all(base, texts)
    wrong = [(p["prediction_id"], next(c for c in classes if c != p["label"])) for p in preds]
    n_fb = feedback_all(base, wrong)
    st, q1 = http("GET", f"{base}/model/quality")
    f1_after = (q1.get("live") or {}).get("f1_macro", math.nan)
    print(f"degrade: {n_fb} wrong labels: live F1 macro {f1_before:.4f} -> {f1_after:.4f} (gate {gate})")
    if not (f1_after < f1_before and f1_after < gate):
        fail(f"degrade: live F1 macro did not fall below the gate: {f1_before} -> {f1_after}")

    # 2. One-class traffic filling the whole recent-prediction window.
    window = q1.get("window_size", 1000)
    # the shortest text predicted as --skew-label, so the batches stay small
    cands = [(len(t), t, p["label"]) for t, p in zip(texts, preds) if p["label"] == args.skew_label]
    if not cands:
        fail(f"degrade: none of the {len(texts)} texts is predicted {args.skew_label!r}")
        return report()
    _, text, label = min(cands)
    sent = 0
    while sent < window:
        n = min(1000, window - sent)
        got = predict_all(base, [text] * n)
        if any(p["label"] != label for p in got):
            fail("degrade: the same text got different labels")
        sent += n
    st, q2 = http("GET", f"{base}/model/quality")
    drift = q2.get("drift") or {}
    print(f"degrade: {sent} predictions of {label!r}: label JS divergence "
          f"{(q1.get('drift') or {}).get('label_js_divergence', math.nan):.4f} -> {drift.get('label_js_divergence', math.nan):.4f}, "
          f"shares {drift.get('predicted_label_share')}")

    # 3. The alert expressions (without `for`) against the real Prometheus.
    wait_prom(prom, f'sum(nbserve_feedback_total{{job="{args.job}", result="accepted"}})',
              lambda v: v >= q1.get("samples", 0), args.timeout, "degrade: scrape of the feedback")
    wait_prom(prom, f'max(nbserve_live_label_drift_js{{job="{args.job}"}})',
              lambda v: v > 0.1, args.timeout, "degrade: scrape of the drift gauge")
    wait_recorded(prom, args.timeout, "degrade")
    fleet_after = prom_scalar(prom, fleet)
    print(f"degrade: PromQL fleet F1 macro {fleet_before} -> {fleet_after}")
    if fleet_after is None or fleet_before is None or not fleet_after < min(fleet_before, gate):
        fail(f"degrade: fleet F1 macro did not fall below the gate: {fleet_before} -> {fleet_after}")
    for name in ("NbserveLiveF1BelowGate", "NbserveLabelDrift"):
        r = prom_query(prom, rule_expr(prom, name), time.time())
        res = r.get("data", {}).get("result", [])
        if r.get("status") != "success" or not res:
            fail(f"degrade: {name} expression is empty: {r}")
        else:
            print(f"degrade: {name} expression true: " + ", ".join(
                f"{s['metric'].get('instance', s['metric'].get('job'))}={float(s['value'][1]):.4f}" for s in res))
    # Prometheus itself evaluates the rules: both go pending (their `for` is 15m).
    want = {"NbserveLiveF1BelowGate", "NbserveLabelDrift"}
    deadline = time.time() + args.timeout
    while True:
        r = prom_query(prom, 'ALERTS{alertstate=~"pending|firing"}')
        active = {s["metric"]["alertname"] for s in r.get("data", {}).get("result", [])}
        if want <= active or time.time() > deadline:
            break
        time.sleep(0.5)
    print(f"degrade: pending/firing alerts: {sorted(active)}")
    if not want <= active:
        fail(f"degrade: alerts not pending: {sorted(want - active)}")
    print(f"degrade: done in {time.monotonic() - started:.1f}s")
    return report()


# ----------------------------------------------------------- alertmanager
def cmd_am_config(args) -> int:
    text = AM_FILE.read_text()
    base = args.webhook.rstrip("/")
    # every receiver's webhook -> the test's listener, one path per receiver
    text, n = re.subn(r"(?m)^(  - name: (\w+)\n    webhook_configs:\n      - url: )\S+",
                      lambda m: f"{m.group(1)}{base}/{m.group(2)}", text)
    receivers = re.findall(r"(?m)^  - name: (\w+)$", text)
    if n == 0 or n != len(receivers):
        fail(f"am-config: {n} webhook urls replaced, receivers {receivers}")
    # seconds instead of minutes, so the test sees deliveries quickly
    for key, val in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1m"),
                     ("resolve_timeout", "1m")):
        text = re.sub(rf"(?m)^(\s+{key}: )\S+", rf"\g<1>{val}", text)
    Path(args.out).write_text(text)
    return report()


def cmd_webhook(args) -> int:
    """Serves until killed; each POST body becomes one line of --log."""
    import http.server

    log = open(args.log, "a", encoding="utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                payload = json.loads(body)
            except json.JSONDecodeError:
                payload = {"invalid": body.decode(errors="replace")}
            log.write(json.dumps({"received": time.time(), "path": self.path, "payload": payload}) + "\n")
            log.flush()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(srv.server_address[1]))
    tmp.rename(args.port_file)
    srv.serve_forever()
    return 0


def webhook_deliveries(path: str) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def cmd_wait_webhook(args) -> int:
    since = args.since if args.since is not None else 0.0
    deadline = time.time() + args.timeout
    while True:
        for d in webhook_deliveries(args.log):
            if d["received"] < since:
                continue
            for a in (d["payload"].get("alerts") or []):
                if a.get("labels", {}).get("alertname") == args.alert and a.get("status") == "firing":
                    labels = a["labels"]
                    if args.receiver and d["path"] != f"/{args.receiver}":
                        fail(f"wait-webhook: {args.alert} arrived at {d['path']}, expected /{args.receiver}")
                    extra = f", {args.since_what} -> delivery {d['received'] - since:.1f}s" if args.since else ""
                    print(f"wait-webhook: {args.alert} (severity {labels.get('severity')}) delivered to "
                          f"{d['path']}{extra}")
                    return report()
        if time.time() > deadline:
            got = sorted({(d["path"], a.get("labels", {}).get("alertname"), a.get("status"))
                          for d in webhook_deliveries(args.log) for a in (d["payload"].get("alerts") or [])})
            fail(f"wait-webhook: no firing {args.alert} within {args.timeout}s; deliveries: {got}")
            return report()
        time.sleep(0.25)


def report() -> int:
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("static")
    p = sub.add_parser("prom-config")
    p.add_argument("--out", required=True)
    p.add_argument("--rules", default=str(RULES_FILE))
    p.add_argument("--nbserve", required=True, action="append", help="host:port (repeat for a fleet)")
    p.add_argument("--prometheus", required=True)
    p.add_argument("--alertmanager", help="host:port of an Alertmanager to send alerts to")
    p.add_argument("--for", dest="for_", action="append", default=[], metavar="ALERT=DURATION",
                   help="replace the `for:` of ALERT in the test's copy of the rules")
    p = sub.add_parser("traffic")
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--sample", default=str(ROOT / "tests" / "data" / "sample.csv"))
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--pause", type=float, default=2.5, help="seconds between rounds (> scrape interval)")
    p.add_argument("--broken-model", help="file in the server's model.dir that is not a valid model")
    p.add_argument("--examples", action="store_true", help="also send labelled examples (feedback.accept_examples on)")
    p = sub.add_parser("wait-scraped")
    p.add_argument("--url", required=True)
    p.add_argument("--prom", required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--settle", type=float, default=2.5)
    p = sub.add_parser("live")
    p.add_argument("--min-samples", type=int, default=100,
                   help="the dashboards' $min_samples (fleet live quality needs that many labels)")
    p.add_argument("--prom", required=True)
    p.add_argument("--job", default="nbserve")
    p.add_argument("--instance", default=".*")
    p.add_argument("--expect-firing", action="append", default=[])
    p.add_argument("--model-file", help="the served artifact: the Model lifecycle panels are checked against it")
    p.add_argument("--examples", type=int, default=0, help="labelled examples the traffic step had accepted")
    p.add_argument("--since", type=float,
                   help="unix time Prometheus started: annotation and event panels are drawn over the "
                        "whole test and compared with the events that happened")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for --expect-firing")
    p = sub.add_parser("replay")
    p.add_argument("--min-samples", type=int, default=100,
                   help="the dashboards' $min_samples (fleet live quality needs that many labels)")
    p.add_argument("--url", required=True)
    p.add_argument("--prom", required=True)
    p.add_argument("--job", default="nbserve")
    p.add_argument("--data", required=True, help="held-out split CSV (text,label)")
    p.add_argument("--offline", required=True, help="`nbserve evaluate --json` of the model on --data")
    p.add_argument("--model", default=str(ROOT / "models" / "spam-nb.json"))
    p.add_argument("--timeout", type=float, default=20)
    p = sub.add_parser("am-config")
    p.add_argument("--out", required=True)
    p.add_argument("--webhook", required=True, help="base URL of the test's webhook listener")
    p = sub.add_parser("webhook")
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p = sub.add_parser("wait-webhook")
    p.add_argument("--log", required=True)
    p.add_argument("--alert", required=True)
    p.add_argument("--receiver", help="the receiver (path) it must arrive at")
    p.add_argument("--since", type=float, help="unix time: only deliveries after it; the delay is printed")
    p.add_argument("--since-what", default="start")
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("degrade")
    p.add_argument("--min-samples", type=int, default=100,
                   help="the dashboards' $min_samples (fleet live quality needs that many labels)")
    p.add_argument("--url", required=True)
    p.add_argument("--prom", required=True)
    p.add_argument("--job", default="nbserve")
    p.add_argument("--data", required=True, help="CSV whose texts are sent (labels unused)")
    p.add_argument("--wrong", type=int, default=400, help="predictions given a wrong label")
    p.add_argument("--skew-label", default="spam", help="class of the one-class traffic")
    p.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    return {"static": cmd_static, "prom-config": cmd_prom_config, "traffic": cmd_traffic,
            "wait-scraped": cmd_wait_scraped, "live": cmd_live, "replay": cmd_replay,
            "degrade": cmd_degrade, "am-config": cmd_am_config, "webhook": cmd_webhook,
            "wait-webhook": cmd_wait_webhook}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
