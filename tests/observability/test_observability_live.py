"""The monitoring live: the real nbserve, a real Prometheus scraping it every
second with the alert rules loaded (a copy: every group evaluated each
second, NbserveDown's `for` 2s), a real Alertmanager whose receivers post to
a webhook listener of the test's own. Told in order, each step a
module-scoped fixture the tests read:

1. the held-out split of the real dataset (data/spamassassin.csv, cut with
   the test size and seed the artifact records) is replayed through
   /predict/batch and /feedback/batch: live quality (/model/quality) must
   equal `nbserve evaluate` and the artifact's stored figures to 1e-9, the
   dashboards' fleet PromQL to 1e-6;
2. traffic: predictions of both classes, batches, 4xx, a reload, a failing
   reload (a broken artifact in model.dir), feedback, labelled examples (2
   per class of tests/data/sample.csv): every answer has its documented
   status and error code;
3. once Prometheus scraped it, EVERY PromQL expression of the dashboards and
   the rules is evaluated through the HTTP API: all must be valid and every
   dashboard query must return data (except the few check.MAY_BE_EMPTY, with
   their reason); the fleet live F1/BA/accuracy in PromQL equal the server's
   own nbserve_live_* gauges; the Model lifecycle panels show the served
   artifact's age, one version, the accepted examples and kept text; the
   annotations and event panels draw each event once; the failed reload's
   NbserveModelReloadFailing and the Watchdog fire;
4. wrong labels and one-class traffic drop live F1 and make the
   NbserveLiveF1BelowGate and NbserveLabelDrift expressions true (both rules
   go pending; their `for` is 15m);
5. the Watchdog reaches the watchdog receiver, NbserveModelReloadFailing the
   ticket receiver, and once nbserve is stopped NbserveDown the page
   receiver; the delivery delays go to the closing "figures".

NBSERVE_OBS_LIVE=0 skips this module, NBSERVE_OBS_REPLAY=0 step 1 (no
data/spamassassin.csv and no registry access to fetch it): skipped tests are
reported as skipped, never counted as passed.
"""

from __future__ import annotations

import argparse
import csv
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import check
from conftest import (ROOT, SHIPPED_MODEL, free_port, note_logs_on_failure, start_alertmanager, start_daemon,
                      start_server)

LIVE = os.environ.get("NBSERVE_OBS_LIVE", "1") != "0"
REPLAY = os.environ.get("NBSERVE_OBS_REPLAY", "1") != "0"
pytestmark = pytest.mark.skipif(not LIVE, reason="NBSERVE_OBS_LIVE=0: the live evaluation is skipped")
needs_replay = pytest.mark.skipif(not REPLAY, reason="NBSERVE_OBS_REPLAY=0: the real-dataset replay is skipped")

JOB = "nbserve"
# admin.token must be at least 8 characters (the server refuses shorter ones).
TOKEN = "test-observability"
DATA = ROOT / "data" / "spamassassin.csv"
SAMPLE = ROOT / "tests" / "data" / "sample.csv"
# The dashboards hide fleet live quality below $min_samples labels (100); the
# traffic alone labels ~66 predictions, the replay ~1,200.
MIN_SAMPLES = 100 if REPLAY else 10
FIGURES = ("f1_macro", "balanced_accuracy", "accuracy")
TIMEOUT = 60


def new_failures(before: int) -> list[str]:
    """What check.py's helpers reported (they collect, not raise) since `before`."""
    return check.failures[before:]


def predict(base: str, texts: list[str]) -> list[dict]:
    """check.predict_all, a refused batch an assertion with what went wrong."""
    before = len(check.failures)
    try:
        return check.predict_all(base, texts)
    except SystemExit:  # predict_all's way of saying a batch was refused
        raise AssertionError(new_failures(before)) from None


class Webhook:
    """The test's own webhook receiver: each POST body is kept with its time
    and path (one path per Alertmanager receiver)."""

    def __init__(self, log_path: Path):
        self.deliveries: list[dict] = []
        self.lock = threading.Lock()
        self.log_path = log_path
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                except json.JSONDecodeError:
                    payload = {"invalid": body.decode(errors="replace")}
                hook.add({"received": time.time(), "path": self.path, "payload": payload})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, delivery: dict) -> None:
        with self.lock:
            self.deliveries.append(delivery)
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(delivery) + "\n")

    def wait(self, alert: str, since: float, timeout: float) -> dict | None:
        """The first firing `alert` notification received after `since`."""
        deadline = time.time() + timeout
        while True:
            with self.lock:
                for d in self.deliveries:
                    if d["received"] >= since and any(
                            a.get("labels", {}).get("alertname") == alert and a.get("status") == "firing"
                            for a in d["payload"].get("alerts") or []):
                        return d
            if time.time() > deadline:
                return None
            time.sleep(0.25)

    def seen(self) -> list:
        with self.lock:
            return sorted({(d["path"], a.get("labels", {}).get("alertname"), a.get("status"))
                           for d in self.deliveries for a in d["payload"].get("alerts") or []})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """nbserve, the webhook, Alertmanager and Prometheus of the live test."""

    server = webhook = alertmanager = prometheus = None
    prom = url = ""
    prom_started = 0.0


@pytest.fixture(scope="module")
def split(nbserve_bin, tmp_path_factory, figures):
    """The held-out split the artifact was evaluated on (its test size and
    seed, so a retrained model is replayed on its own held-out part), and
    `nbserve evaluate --json` of the model on it: (test.csv, offline figures)."""
    if not REPLAY:
        return None, None
    work = tmp_path_factory.mktemp("observability-split")
    if not DATA.is_file():
        subprocess.run([str(ROOT / "scripts" / "fetch-data.sh")], check=True)
    training = json.loads(SHIPPED_MODEL.read_text())["training"]
    subprocess.run([str(nbserve_bin), "split", "--data", str(DATA), "--train-out", str(work / "train.csv"),
                    "--test-out", str(work / "test.csv"), "--test-size", repr(training["test_size"]),
                    "--seed", str(training["seed"])], check=True, capture_output=True)
    offline = subprocess.run([str(nbserve_bin), "evaluate", "--model", str(SHIPPED_MODEL), "--data",
                              str(work / "test.csv"), "--json"], check=True, capture_output=True, text=True)
    figures("observability split", f"test size {training['test_size']!r}, seed {training['seed']}")
    return work / "test.csv", json.loads(offline.stdout)


@pytest.fixture(scope="module")
def stack(nbserve_bin, prometheus_bin, alertmanager_bin, tmp_path_factory, request):
    work = tmp_path_factory.mktemp("observability")
    s = Stack()
    try:
        # The shipped model, plus a broken artifact in the same model.dir so a
        # reload can fail for real (and NbserveModelReloadFailing fire).
        (work / "models").mkdir()
        shutil.copy(SHIPPED_MODEL, work / "models" / "spam-nb.json")
        (work / "models" / "broken.json").write_text('{"not": "a model"}\n')
        # feedback.window holds all of the test's feedback (replay ~1,200 +
        # traffic + wrong labels), so the server's live gauges and the fleet
        # PromQL cover the same samples. The feedback log with kept texts and
        # labelled examples is on (the retrain loop's inputs), so the Model
        # lifecycle panels show real examples and kept-text bytes.
        s.server = start_server(nbserve_bin, work, {
            "FEEDBACK__WINDOW": 2000, "FEEDBACK__LOG_PATH": work / "feedback.jsonl",
            "FEEDBACK__KEEP_TEXT": "true", "FEEDBACK__ACCEPT_EXAMPLES": "true", "ADMIN__TOKEN": TOKEN})
        s.url = s.server.url
        s.webhook = Webhook(work / "webhook.log")
        (work / "alertmanager.yml").write_text(check.am_config(s.webhook.url))
        subprocess.run([str(alertmanager_bin / "amtool"), "check-config", str(work / "alertmanager.yml")],
                       check=True, capture_output=True)
        aport = free_port()
        s.alertmanager = start_alertmanager(alertmanager_bin, work, work / "alertmanager.yml", aport)
        pport = free_port()
        # The test's copy of the rules: NbserveDown after 2s instead of 1m, so
        # that stopping nbserve at the end shows a real alert reaching the webhook.
        before = len(check.failures)
        check.cmd_prom_config(argparse.Namespace(
            out=str(work / "prometheus.yml"), rules=str(check.RULES_FILE), for_=["NbserveDown=2s"],
            nbserve=[f"127.0.0.1:{s.server.port}"], prometheus=f"127.0.0.1:{pport}",
            alertmanager=f"127.0.0.1:{aport}"))
        assert not new_failures(before), new_failures(before)
        subprocess.run([str(prometheus_bin / "promtool"), "check", "config", str(work / "prometheus.yml")],
                       check=True, capture_output=True)
        s.prom_started = time.time()
        # resend-delay 1s: alerts that fired before the notifier knew the
        # Alertmanager are sent again at once, not after the default minute.
        s.prometheus = start_daemon(
            "prometheus",
            [str(prometheus_bin / "prometheus"), f"--config.file={work}/prometheus.yml",
             f"--storage.tsdb.path={work}/tsdb", f"--web.listen-address=127.0.0.1:{pport}",
             "--rules.alert.resend-delay=1s", "--log.level=warn"],
            work, f"http://127.0.0.1:{pport}/-/ready", wait=60)
        s.prom = s.prometheus.url
        yield s
    finally:
        for part in (s.prometheus, s.alertmanager, s.server, s.webhook):
            if part is not None:
                part.stop()
        logs = {"nbserve": work / "server-0.log", "prometheus.log": work / "prometheus.log",
                "alertmanager.log": work / "alertmanager.log", "webhook.log": work / "webhook.log"}
        note_logs_on_failure(request, logs, lines=30)


def test_nbserve_is_ready(stack):
    assert check.http("GET", f"{stack.url}/ready")[0] == 200


def test_prometheus_is_ready(stack):
    assert check.http("GET", f"{stack.prom}/-/ready")[0] == 200


@pytest.fixture(scope="module")
def scraping(stack):
    """Prometheus has scraped nbserve once: increase() needs the counters' zero sample."""
    before = len(check.failures)
    up = check.wait_prom(stack.prom, f'up{{job="{JOB}"}}', lambda v: v == 1, TIMEOUT, "the first scrape of nbserve")
    return up, new_failures(before)


def test_prometheus_scrapes_nbserve(scraping):
    up, failures = scraping
    assert up == 1 and not failures, failures


# ------------------------------------------------------------------ 1. replay
@pytest.fixture(scope="module")
def replayed(stack, scraping, split, figures):
    """Every document of the split predicted and labelled with its true label;
    the server's live quality, and the time Prometheus holds all of it."""
    test_csv, offline = split
    rows = check.read_csv(str(test_csv))
    before = len(check.failures)
    out = {"rows": rows, "offline": offline}
    out["served"] = check.http("GET", f"{stack.url}/model")[1]
    out["before"] = check.http("GET", f"{stack.url}/model/quality")[1]
    started = time.monotonic()
    preds = predict(stack.url, [t for t, _ in rows])
    out["accepted"] = check.feedback_all(stack.url, [(p["prediction_id"], lab) for p, (_, lab) in zip(preds, rows)])
    figures("replay", f"{len(rows)} documents of the held-out split predicted and labelled in "
                      f"{time.monotonic() - started:.1f}s")
    out["after"] = check.http("GET", f"{stack.url}/model/quality")[1]
    # The fleet PromQL once Prometheus has scraped all of the replay's feedback.
    check.wait_prom(stack.prom, f'sum(nbserve_feedback_confusion_total{{job="{JOB}"}})',
                    lambda v: v >= len(rows), TIMEOUT, "replay: scrape of the feedback counters")
    check.wait_recorded(stack.prom, TIMEOUT, "replay")
    out["now"] = time.time()
    out["failures"] = new_failures(before)
    return out


@needs_replay
@pytest.mark.parametrize("figure", FIGURES)
def test_replay_split_is_the_one_the_served_model_was_evaluated_on(replayed, figure):
    offline = replayed["offline"]
    stored = json.loads(SHIPPED_MODEL.read_text())["evaluation"]
    served = (replayed["served"] or {}).get("evaluation", {})
    assert offline.get("documents") == len(replayed["rows"]), (offline.get("documents"), len(replayed["rows"]))
    for what, d in (("the artifact's stored evaluation", stored), ("GET /model evaluation", served)):
        assert abs(d.get(figure, math.nan) - offline[figure]) <= 1e-9, \
            f"{what} {figure} {d.get(figure)} != offline {offline[figure]} (not the held-out split?)"


@needs_replay
def test_replay_labels_every_document_in_one_window(replayed):
    before, after, rows = replayed["before"], replayed["after"], replayed["rows"]
    assert before.get("samples") == 0, f"the live window was not empty before the replay: {str(before)[:200]}"
    assert before.get("window_size", 0) >= len(rows), f"feedback.window {before.get('window_size')} < {len(rows)}"
    assert replayed["accepted"] == len(rows) and after.get("samples") == len(rows), \
        (replayed["accepted"], after.get("samples"), len(rows), replayed["failures"])


@needs_replay
@pytest.mark.parametrize("figure", FIGURES)
def test_replay_live_quality_equals_the_offline_evaluation(replayed, figure, figures):
    live, offline = (replayed["after"].get("live") or {}).get(figure, math.nan), replayed["offline"][figure]
    figures(f"replay live {figure}", f"{live!r} vs offline {offline!r} (|d| {abs(live - offline):.1e})")
    assert abs(live - offline) <= 1e-9


@needs_replay
@pytest.mark.parametrize("figure", FIGURES)
def test_replay_fleet_promql_equals_the_offline_evaluation(stack, replayed, figure, figures):
    assert not replayed["failures"], replayed["failures"]
    before = len(check.failures)
    expr = check.fleet_exprs(JOB, MIN_SAMPLES)[figure]
    got, offline = check.prom_scalar(stack.prom, expr, replayed["now"]), replayed["offline"][figure]
    assert got is not None and not new_failures(before), f"no single value from {expr}: {new_failures(before)}"
    figures(f"replay PromQL fleet {figure}", f"{got!r} vs offline {offline!r} (|d| {abs(got - offline):.1e})")
    assert abs(got - offline) <= 1e-6, expr


# ----------------------------------------------------------------- 2. traffic
KINDS = ["POST /predict", "POST /predict/batch", "malformed JSON", "missing field", "empty batch", "unknown route",
         "reload without token", "GET /health", "GET /ready", "GET /model", "GET /model/quality",
         "POST /admin/reload", "failing POST /admin/reload", "POST /feedback", "duplicate feedback",
         "unknown prediction_id", "invalid label", "POST /examples", "POST /examples (batch)",
         "example with an unknown label"]
PER_CLASS = 20
# Seconds between rounds (more than the scrape interval), so rates span several scrapes.
PAUSE = 2.5


class Traffic:
    """What the traffic step sent and what came back wrong, by kind of request."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.problems: dict[str, list[str]] = {}
        self.predicted_labels: list[str] = []
        self.examples = 0

    def expect(self, what: str, status: int, ok, body=None, code: str | None = None) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        problems = self.problems.setdefault(what, [])
        if not ok(status):
            problems.append(f"unexpected status {status}: {str(body)[:200]}")
        if code is not None:
            got = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
            if got != code:
                problems.append(f"error code {got!r}, documented {code!r}")


@pytest.fixture(scope="module")
def traffic(stack, scraping, request, figures) -> Traffic:
    """Predictions, batches, client errors, a reload and a failing one,
    feedback in two rounds (true labels from the sample, so live quality is
    the model's on it), refused feedback, labelled examples, more predictions."""
    if REPLAY:
        request.getfixturevalue("replayed")  # the replay needs an empty window: it comes first
    base, http, t = stack.url, check.http, Traffic()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with open(SAMPLE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[str]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r["text"])
    labels = sorted(by_label)
    assert len(labels) >= 2, f"{SAMPLE}: expected at least two labels, got {labels}"
    docs = [(lab, text) for lab in labels for text in by_label[lab][:PER_CLASS]]

    predicted: list[tuple[str, str, str]] = []  # (prediction_id, true label, predicted label)
    for lab, text in docs:
        st, body = http("POST", f"{base}/predict", {"text": text})
        t.expect("POST /predict", st, lambda s: s == 200, body)
        if st == 200 and isinstance(body, dict):
            if not body.get("prediction_id"):
                t.problems["POST /predict"].append(f"no prediction_id: {str(body)[:200]}")
            else:
                predicted.append((body["prediction_id"], lab, body.get("label")))
    t.predicted_labels = sorted({p for *_, p in predicted})
    for size in (1, 5, 20):
        st, body = http("POST", f"{base}/predict/batch", {"texts": [text for _, text in docs[:size]]})
        t.expect("POST /predict/batch", st, lambda s: s == 200, body)
        if st == 200 and isinstance(body, dict):
            for i, item in enumerate(body.get("predictions") or []):
                if isinstance(item, dict) and item.get("prediction_id"):
                    predicted.append((item["prediction_id"], docs[i][0], item.get("label")))

    # client errors: malformed JSON, schema violations, unknown routes, no token
    st, body = http("POST", f"{base}/predict", raw=b"{not json")
    t.expect("malformed JSON", st, lambda s: s == 400, body)
    st, body = http("POST", f"{base}/predict", {"txt": "missing field"})
    t.expect("missing field", st, lambda s: s == 422, body)
    st, body = http("POST", f"{base}/predict/batch", {"texts": []})
    t.expect("empty batch", st, lambda s: s == 422, body, "empty_batch")
    st, body = http("GET", f"{base}/no/such/route")
    t.expect("unknown route", st, lambda s: s == 404, body, "not_found")
    # admin.token is set: a request without it is unauthorized (403 would mean admin is off)
    st, body = http("POST", f"{base}/admin/reload")
    t.expect("reload without token", st, lambda s: s == 401, body, "unauthorized")
    for path in ("/health", "/ready", "/model", "/model/quality"):
        st, body = http("GET", f"{base}{path}")
        t.expect(f"GET {path}", st, lambda s: s == 200, body)

    # a reload of the same model: success, a model annotation, a new load time
    st, body = http("POST", f"{base}/admin/reload", headers=auth)
    t.expect("POST /admin/reload", st, lambda s: s == 200, body)
    # a reload that fails (invalid artifact): nbserve_model_reloads_total{result="failure"}
    # goes up and NbserveModelReloadFailing (no `for`) must fire
    st, body = http("POST", f"{base}/admin/reload", {"path": "broken.json"}, headers=auth)
    t.expect("failing POST /admin/reload", st, lambda s: s == 422, body)

    # feedback in two rounds, so counters change between scrapes
    half = len(predicted) // 2
    for i, (pid, lab, _) in enumerate(predicted):
        if i == half:
            time.sleep(PAUSE)
        st, body = http("POST", f"{base}/feedback", {"prediction_id": pid, "label": lab})
        t.expect("POST /feedback", st, lambda s: 200 <= s < 300, body)
    # feedback that is refused
    st, body = http("POST", f"{base}/feedback", {"prediction_id": predicted[0][0], "label": predicted[0][1]})
    t.expect("duplicate feedback", st, lambda s: s == 409, body, "duplicate_feedback")
    st, body = http("POST", f"{base}/feedback", {"prediction_id": "00000000-0000-0000-0000-000000000000",
                                                 "label": labels[0]})
    t.expect("unknown prediction_id", st, lambda s: s == 404, body, "unknown_prediction")
    st, body = http("POST", f"{base}/feedback", {"prediction_id": predicted[1][0], "label": "no-such-label"})
    t.expect("invalid label", st, lambda s: s == 422, body, "invalid_label")

    # labelled examples (feedback.accept_examples): single and batch forms are
    # accepted, an unknown label is refused (counted by result)
    for lab in labels:
        st, body = http("POST", f"{base}/examples", {"text": by_label[lab][0], "label": lab})
        t.expect("POST /examples", st, lambda s: s == 200, body)
    st, body = http("POST", f"{base}/examples", {"examples": [{"text": by_label[lab][1], "label": lab}
                                                              for lab in labels]})
    t.expect("POST /examples (batch)", st, lambda s: s == 200, body)
    if st == 200 and (not isinstance(body, dict) or body.get("accepted") != len(labels)):
        t.problems["POST /examples (batch)"].append(f"a batch of {len(labels)}: {str(body)[:200]}")
    t.examples = 2 * len(labels)
    st, body = http("POST", f"{base}/examples", {"text": "some text", "label": "no-such-label"})
    t.expect("example with an unknown label", st, lambda s: s == 422, body, "invalid_label")

    # a second round of predictions after a pause so rates span several scrapes
    time.sleep(PAUSE)
    for lab, text in docs[: 2 * PER_CLASS: 2]:
        st, body = http("POST", f"{base}/predict", {"text": text})
        t.expect("POST /predict", st, lambda s: s == 200, body)
    figures("traffic", ", ".join(f"{k} x{v}" for k, v in t.counts.items()))
    return t


def test_traffic_predictions_cover_both_classes(traffic):
    assert len(traffic.predicted_labels) >= 2, traffic.predicted_labels


@pytest.mark.parametrize("kind", KINDS)
def test_traffic_answer_has_its_documented_status_and_error_code(traffic, kind):
    assert traffic.counts.get(kind), f"no {kind} was sent"
    assert not traffic.problems.get(kind), traffic.problems[kind]


@pytest.fixture(scope="module")
def scraped(stack, traffic):
    """Prometheus holds the server's current request, feedback and reload
    counts, and the rules evaluated on them; then (evaluation time, failures)."""
    before = len(check.failures)
    st, text = check.http("GET", f"{stack.url}/metrics")
    assert st == 200, f"GET /metrics -> {st}"
    want = {m: check.metric_total(text, m) for m in
            ("nbserve_feedback_total", "nbserve_predictions_total", "nbserve_model_reloads_total")}
    deadline = time.time() + TIMEOUT
    while True:
        got = {m: check.prom_scalar(stack.prom, f'sum({m}{{job="{JOB}"}})') for m in want}
        got = {m: -1 if v is None else v for m, v in got.items()}
        if all(got[m] >= want[m] for m in want) or time.time() > deadline:
            break
        time.sleep(0.5)
    # let the rules evaluate on the new samples
    time.sleep(2.5)
    return got, want, new_failures(before)


def test_prometheus_scraped_the_traffic(scraped):
    got, want, failures = scraped
    assert all(got[m] >= want[m] for m in want) and not failures, f"Prometheus has {got}, the server {want}"


# ------------------------------------------------------- 3. every expression
DASHBOARD_UIDS = sorted(check.EXPECTED_UIDS.values())


def dashboard_by_uid(uid: str) -> dict:
    return next(d for d in check.load_dashboards().values() if d.get("uid") == uid)


def values_for(dash: dict) -> dict[str, str]:
    """The variables' values for the live evaluation: each variable's current
    value, job and instance for the test's target, and $min_samples."""
    values = dict(check.BUILTIN_VARS)
    for v in dash.get("templating", {}).get("list", []):
        cur = (v.get("current") or {}).get("value")
        if isinstance(cur, list):
            cur = cur[0] if cur else ""
        values[v["name"]] = cur or ""
    values.update(job=JOB, instance=".*", model=".*", min_samples=str(MIN_SAMPLES))
    return values


def test_prometheus_loaded_every_alert_rule_of_the_file(stack, scraped):
    before = len(check.failures)
    loaded = sorted(n for _, n, _, kind in check.rules_from_prometheus(stack.prom) if kind == "alerting")
    in_file = sorted(re.findall(r"^\s*- alert:\s*(\w+)", check.RULES_FILE.read_text(), re.M))
    assert loaded == in_file and not new_failures(before), (loaded, in_file, new_failures(before))


def test_every_rule_expression_is_valid_and_healthy(stack, scraped, figures):
    before = len(check.failures)
    rules = check.rules_from_prometheus(stack.prom)
    now, bad, with_data = time.time(), [], 0
    for group, name, expr, _ in rules:
        r = check.prom_query(stack.prom, expr, now)
        if r.get("status") != "success":
            bad.append(f"rule {group}/{name}: {r.get('errorType')}: {r.get('error')}")
        elif r["data"]["result"]:
            with_data += 1
    figures("live rules", f"{len(rules)} rule expressions valid, {with_data} with a result after the traffic")
    assert rules and not bad and not new_failures(before), bad + new_failures(before)


@pytest.mark.parametrize("uid", DASHBOARD_UIDS)
def test_dashboard_variables_have_values(stack, scraped, uid):
    dash, now, bad = dashboard_by_uid(uid), time.time(), []
    values = values_for(dash)
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", str(q or "").strip(), re.S)
        if v.get("type") != "query" or not m:
            continue
        r = check.prom_query(stack.prom, f"count by ({m.group(2)}) ({check.substitute(m.group(1), values)})", now)
        if r.get("status") != "success":
            bad.append(f"${v['name']}: {r.get('error')}")
        elif not r["data"]["result"]:
            bad.append(f"${v['name']}: {q} has no values")
    assert not bad, bad


@pytest.mark.parametrize("uid", DASHBOARD_UIDS)
def test_dashboard_queries_are_valid_and_return_data(stack, scraped, uid, figures):
    dash, now, bad, allowed, n = dashboard_by_uid(uid), time.time(), [], [], 0
    values = values_for(dash)
    for _, where, ref, raw in check.dashboard_queries({uid: dash}):
        label = f"{uid} {where!r} {ref}"
        try:
            expr = check.substitute(raw, values)
        except KeyError as e:
            bad.append(f"{label}: unknown variable ${e.args[0]}")
            continue
        r = check.prom_query(stack.prom, expr, now)
        n += 1
        if r.get("status") != "success":
            bad.append(f"{label}: {r.get('errorType')}: {r.get('error')}\n    {expr}")
            continue
        result = r["data"]["result"]
        if not result:
            reason = check.MAY_BE_EMPTY.get((uid, where, ref))
            if reason:
                allowed.append(f"{label} ({reason})")
            else:
                bad.append(f"{label}: no data\n    {expr}")
            continue
        vals = [s["value"][1] for s in result] if r["data"]["resultType"] == "vector" else []
        if vals and all(v in ("NaN", "+Inf", "-Inf") for v in vals):
            # The docs promise every panel shows data after the traffic: a
            # ratio with nothing behind it is no data either.
            bad.append(f"{label}: only NaN/Inf ({vals[:4]}): no data behind it\n    {expr}")
    figures(f"live {uid}", f"{n} queries evaluated" + (f"; allowed empty: {', '.join(allowed)}" if allowed else ""))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("title, gauge", [("Live F1 macro (fleet)", "nbserve_live_f1_macro"),
                                          ("Live balanced accuracy (fleet)", "nbserve_live_balanced_accuracy"),
                                          ("Live accuracy (fleet)", "nbserve_live_accuracy")])
def test_fleet_live_quality_in_promql_equals_the_servers_gauge(stack, scraped, title, gauge, figures):
    # One process, all of the test's feedback inside its window: the PromQL
    # over the confusion counters must give the server's own figure.
    panel = next((p for p in check.all_panels(dashboard_by_uid("nbserve-model")) if p.get("title") == title), None)
    assert panel, f"nbserve-model: panel {title!r} not found"
    expr = check.substitute(panel["targets"][0]["expr"], {"job": JOB, "model": ".*", "window": "1h",
                                                          "min_samples": str(MIN_SAMPLES), **check.BUILTIN_VARS})
    now = time.time()
    a = check.prom_query(stack.prom, expr, now).get("data", {}).get("result", [])
    b = check.prom_query(stack.prom, f'max({gauge}{{job="{JOB}"}})', now).get("data", {}).get("result", [])
    assert len(a) == 1 and len(b) == 1, f"one value each from PromQL and {gauge}: {a} / {b}"
    va, vb = float(a[0]["value"][1]), float(b[0]["value"][1])
    figures(f"live {title}", f"{va:.6f} = {gauge} {vb:.6f}")
    assert abs(va - vb) <= 1e-6


def lifecycle_panel(prom: str, title: str, now: float) -> list[float]:
    panel = next((p for p in check.all_panels(dashboard_by_uid("nbserve-model")) if p.get("title") == title), None)
    assert panel, f"nbserve-model: panel {title!r} not found"
    values = {"job": JOB, "instance": ".*", "model": ".*", **check.BUILTIN_VARS}
    res = check.prom_query(prom, check.substitute(panel["targets"][0]["expr"], values), now)
    return [float(r["value"][1]) for r in res.get("data", {}).get("result", [])]


def test_model_age_panel_is_now_minus_the_served_artifacts_created_at(stack, scraped):
    created = json.loads(SHIPPED_MODEL.read_text())["created_at"]
    now = time.time()
    ages = lifecycle_panel(stack.prom, "Model age per instance", now)
    want = now - check._rfc3339_seconds(created)
    assert len(ages) == 1 and abs(ages[0] - want) <= 0.01, f"shows {ages}, the artifact ({created}) is {want:.3f}s old"


def test_one_model_version_is_served(stack, scraped):
    assert lifecycle_panel(stack.prom, "Distinct model versions served", time.time()) == [1.0]


def test_accepted_examples_and_kept_text_are_shown(stack, scraped, traffic, figures):
    now = time.time()
    accepted = check.prom_scalar(stack.prom, f'sum(nbserve_examples_total{{job="{JOB}", result="accepted"}})', now)
    refused = check.prom_scalar(stack.prom, f'sum(nbserve_examples_total{{job="{JOB}", result="invalid_label"}})', now)
    kept = lifecycle_panel(stack.prom, "Kept prediction text", now)
    assert accepted == traffic.examples and refused == 1, \
        f"nbserve_examples_total: accepted {accepted} (sent {traffic.examples}), invalid_label {refused} (sent 1)"
    # feedback.keep_text is on and predictions were made
    assert len(kept) == 1 and kept[0] > 0, f"'Kept prediction text' shows {kept}"
    figures("live lifecycle", f"examples accepted {accepted:.0f}, refused 1; kept prediction text {kept[0]:.0f} bytes")


# Events are drawn as Grafana would (range query, step S, $__rate_interval =
# max(S + scrape, 4 x scrape)) over the whole test and compared with the events
# that really happened: each must be drawn exactly once. Event panels draw the
# counter's last value minus its last value one step earlier (last_over_time,
# so a failed scrape's staleness does not cut the chain): the steps telescope,
# so a range adds up to exactly the events in it at any step. Drawn here with a
# 2s step (scrapes every 1s), where an increase over $__rate_interval (4s)
# would count each event about twice.
SCRAPE, STEP = 1.0, 2.0
EVENT_VARS = dict(check.BUILTIN_VARS, job=JOB, instance=".*", model=".*", __interval=f"{STEP:g}s",
                  __interval_ms=f"{STEP * 1000:g}", __rate_interval=f"{max(STEP + SCRAPE, 4 * SCRAPE):g}s")
ANNOTATIONS = [(d["uid"], a["name"]) for d in check.load_dashboards().values()
               for a in d.get("annotations", {}).get("list", []) if a.get("expr")]


def event_range(stack) -> tuple[float, float]:
    # a few seconds past now so the last events' windows are all evaluated
    return math.floor(stack.prom_started / STEP) * STEP, time.time() + 8


@pytest.mark.parametrize("uid, annotation", ANNOTATIONS)
def test_load_annotation_marks_each_load_once_at_its_time(stack, scraped, uid, annotation, figures):
    a = next(a for a in dashboard_by_uid(uid)["annotations"]["list"] if a.get("name") == annotation)
    # drawn from the load time itself, so it does not depend on the step
    assert a.get("useValueForTime"), "not drawn from the load time itself (useValueForTime)"
    start, end = event_range(stack)
    before = len(check.failures)
    loads: dict[str, set[float]] = {}
    for r in check.prom_range(stack.prom, f'nbserve_model_loaded_timestamp_seconds{{job="{JOB}"}}', start, end, STEP):
        loads.setdefault(r["metric"].get("instance", ""), set()).update(float(x) for _, x in r["values"])
    reloads_ok = check.prom_scalar(stack.prom, f'sum(nbserve_model_reloads_total{{job="{JOB}", result="success"}})')
    series = check.prom_range(stack.prom, check.substitute(a["expr"], EVENT_VARS), start, end, STEP)
    events = sorted(check.grafana_annotation_events(series, STEP * 1000))
    want = sorted((inst, math.floor(t * 1000)) for inst, ts in loads.items() for t in ts)
    assert not new_failures(before), new_failures(before)
    # the start plus each successful reload, once each, at its time
    assert events == want and len(want) == 1 + int(reloads_ok or 0), \
        f"events {events}, loads {want} (1 + {reloads_ok} successful reloads)"
    figures(f"live {uid} annotation {annotation!r}", f"{len(events)} events = start + {reloads_ok:.0f} reload(s)")


@pytest.mark.parametrize("title, total, pick", [
    ("Prediction confidence", "sum(nbserve_prediction_confidence_count{job=\"%s\"})" % JOB, "+Inf"),
    ("Model reloads by result", "sum(nbserve_model_reloads_total{job=\"%s\"})" % JOB, None),
])
def test_event_panel_draws_each_event_once(stack, scraped, title, total, pick, figures):
    panel = next((p for p in check.all_panels(dashboard_by_uid("nbserve-model")) if p.get("title") == title), None)
    assert panel, f"nbserve-model: panel {title!r} not found"
    start, end = event_range(stack)
    expr = check.substitute(panel["targets"][0]["expr"], EVENT_VARS)

    def drawn(e: str) -> float:
        return sum(float(x) for r in check.prom_range(stack.prom, e, start, end, STEP)
                   if pick is None or r["metric"].get("le") == pick
                   for _, x in r["values"] if x not in ("NaN", "+Inf", "-Inf"))

    shown = drawn(expr)
    happened = (check.prom_scalar(stack.prom, total) or 0) - (check.prom_scalar(stack.prom, total, stack.prom_started) or 0)
    # what the old increase([$__rate_interval]) at the same step drew
    sel = re.search(r"(nbserve_\w+\{[^}]*\})", expr).group(1)
    by = re.search(r"sum by \((\w+)\)", expr).group(1)
    old = drawn(f"sum by ({by}) (increase({sel}[{EVENT_VARS['__rate_interval']}]))")
    ratio = shown / happened if happened else math.nan
    figures(f"live {title!r}", f"{shown:.1f} events drawn for {happened:.0f} that happened (x{ratio:.3f}; "
                               f"increase([$__rate_interval]) per step would draw "
                               f"x{old / happened if happened else math.nan:.2f})")
    assert happened > 0 and abs(ratio - 1) <= 0.01, f"draws {shown:.1f} events for {happened:.0f}"


@pytest.mark.parametrize("alert", ["NbserveModelReloadFailing", "Watchdog"])
def test_alert_fires(stack, scraped, alert):
    # Prometheus evaluates the rules on its own schedule: poll to a deadline.
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = check.prom_query(stack.prom, 'ALERTS{alertstate="firing"}', time.time())
        firing = {s["metric"]["alertname"] for s in r.get("data", {}).get("result", [])}
        if alert in firing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert alert in firing, f"not firing after {TIMEOUT}s; firing: {sorted(firing)}"


# --------------------------------------------- 4. wrong labels, one-class traffic
WRONG = 400
SKEW_LABEL = "spam"


@pytest.fixture(scope="module")
def degraded(stack, scraped, split, figures):
    """Wrong labels (each prediction gets a class it was not predicted as),
    then one-class traffic filling the whole recent-prediction window, then
    Prometheus scraped and the rules evaluated on it."""
    base, prom = stack.url, stack.prom
    rows = check.read_csv(str(split[0] if REPLAY else SAMPLE))
    before = len(check.failures)
    out = {"q0": check.http("GET", f"{base}/model/quality")[1]}
    model = check.http("GET", f"{base}/model")[1]
    classes, out["gate"] = model["classes"], model["gate_min_f1_macro"]
    fleet = check.fleet_exprs(JOB, MIN_SAMPLES)["f1_macro"]
    out["fleet_before"] = check.prom_scalar(prom, fleet)
    # spread over the file (a split may list one class first)
    texts = [t for t, _ in rows[:: max(1, len(rows) // WRONG)][:WRONG]]
    preds = predict(base, texts)
    wrong = [(p["prediction_id"], next(c for c in classes if c != p["label"])) for p in preds]
    out["wrong"] = check.feedback_all(base, wrong)
    out["q1"] = q1 = check.http("GET", f"{base}/model/quality")[1]
    # the shortest text predicted as SKEW_LABEL, so the batches stay small
    cands = sorted((len(t), t, p["label"]) for t, p in zip(texts, preds) if p["label"] == SKEW_LABEL)
    assert cands, f"none of the {len(texts)} texts is predicted {SKEW_LABEL!r}"
    _, text, label = cands[0]
    out["labels"], sent = set(), 0
    while sent < q1.get("window_size", 1000):
        n = min(1000, q1.get("window_size", 1000) - sent)
        out["labels"] |= {p["label"] for p in predict(base, [text] * n)}
        sent += n
    out["q2"] = check.http("GET", f"{base}/model/quality")[1]
    check.wait_prom(prom, f'sum(nbserve_feedback_total{{job="{JOB}", result="accepted"}})',
                    lambda v: v >= q1.get("samples", 0), TIMEOUT, "degrade: scrape of the feedback")
    check.wait_prom(prom, f'max(nbserve_live_label_drift_js{{job="{JOB}"}})', lambda v: v > 0.1, TIMEOUT,
                    "degrade: scrape of the drift gauge")
    check.wait_recorded(prom, TIMEOUT, "degrade")
    out["fleet_after"] = check.prom_scalar(prom, fleet)
    out["failures"] = new_failures(before)
    drift = out["q2"].get("drift") or {}
    figures("degrade", f"{out['wrong']} wrong labels: live F1 macro {(out['q0'].get('live') or {}).get('f1_macro')} -> "
                       f"{(q1.get('live') or {}).get('f1_macro')} (gate {out['gate']}); {sent} predictions of "
                       f"{label!r}: label JS divergence {(q1.get('drift') or {}).get('label_js_divergence')} -> "
                       f"{drift.get('label_js_divergence')}; PromQL fleet F1 macro {out['fleet_before']} -> "
                       f"{out['fleet_after']}")
    return out


def test_wrong_labels_drop_live_f1_below_the_gate(degraded):
    before = (degraded["q0"].get("live") or {}).get("f1_macro")
    after = (degraded["q1"].get("live") or {}).get("f1_macro", math.nan)
    assert degraded["wrong"] == WRONG, degraded["failures"]
    assert after < before and after < degraded["gate"], (before, after, degraded["gate"])


def test_one_class_traffic_gets_one_label(degraded):
    assert degraded["labels"] == {SKEW_LABEL}, degraded["labels"]


def test_fleet_f1_in_promql_falls_below_the_gate(degraded):
    before, after = degraded["fleet_before"], degraded["fleet_after"]
    assert not degraded["failures"], degraded["failures"]
    assert before is not None and after is not None and after < min(before, degraded["gate"]), (before, after)


@pytest.mark.parametrize("alert", ["NbserveLiveF1BelowGate", "NbserveLabelDrift"])
def test_alert_expression_is_true(stack, degraded, alert, figures):
    before = len(check.failures)
    r = check.prom_query(stack.prom, check.rule_expr(stack.prom, alert), time.time())
    res = r.get("data", {}).get("result", [])
    assert r.get("status") == "success" and res and not new_failures(before), (r, new_failures(before))
    figures(f"degrade {alert}", ", ".join(f"{s['metric'].get('instance', s['metric'].get('job'))}="
                                          f"{float(s['value'][1]):.4f}" for s in res))


def test_both_quality_alerts_go_pending(stack, degraded):
    # Prometheus itself evaluates the rules: both go pending (their `for` is 15m).
    want = {"NbserveLiveF1BelowGate", "NbserveLabelDrift"}
    deadline = time.time() + TIMEOUT
    while True:
        r = check.prom_query(stack.prom, 'ALERTS{alertstate=~"pending|firing"}')
        active = {s["metric"]["alertname"] for s in r.get("data", {}).get("result", [])}
        if want <= active or time.time() > deadline:
            break
        time.sleep(0.5)
    assert want <= active, f"not pending: {sorted(want - active)}; active {sorted(active)}"


# ------------------------------------------------ 5. through Alertmanager
def delivered(stack, alert: str, receiver: str, since: float, since_what: str, timeout: float, figures) -> None:
    d = stack.webhook.wait(alert, since, timeout)
    assert d is not None, f"no firing {alert} within {timeout}s; deliveries: {stack.webhook.seen()}"
    severity = next(a["labels"].get("severity") for a in d["payload"]["alerts"]
                    if a.get("labels", {}).get("alertname") == alert)
    figures(f"webhook {alert}", f"severity {severity}, delivered to {d['path']}, "
                                f"{since_what} -> delivery {d['received'] - since:.1f}s")
    assert d["path"] == f"/{receiver}", f"{alert} arrived at {d['path']}, expected /{receiver}"


def test_watchdog_reaches_the_watchdog_receiver(stack, degraded, figures):
    delivered(stack, "Watchdog", "watchdog", stack.prom_started, "Prometheus start", TIMEOUT, figures)


def test_failed_reload_reaches_the_ticket_receiver(stack, degraded, figures):
    # A ticket: the failed reload of the traffic step (NbserveModelReloadFailing).
    delivered(stack, "NbserveModelReloadFailing", "ticket", stack.prom_started, "Prometheus start", 30, figures)


def test_nbserve_down_reaches_the_page_receiver(stack, degraded, figures):
    # Stop nbserve for real: NbserveDown (its `for` shortened to 2s here) must
    # be delivered to the page receiver.
    stack.server.stop()
    stopped = time.time()
    delivered(stack, "NbserveDown", "page", stopped, "nbserve stopped", TIMEOUT, figures)
