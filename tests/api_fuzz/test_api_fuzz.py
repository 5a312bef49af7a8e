"""Schema-driven API fuzzing: Schemathesis (pinned and hash-checked in
scripts/api-fuzz-requirements.txt, its CLI run from here) generates valid and
invalid requests for every operation in the running server's /openapi.json
and checks that
  - no answer is a 5xx                        (not_a_server_error)
  - every body matches its documented schema  (response_schema_conformance)
  - every status is documented                (status_code_conformance)
  - every content type is documented          (content_type_conformance)
Bounded by cases, not by time: FUZZ_EXAMPLES (100) examples per operation, a
fixed seed (FUZZ_SEED, 1) so a run is reproducible, and at least
FUZZ_MIN_CASES (600) test cases in all. FUZZ_TIMEOUT (900 s) only guards
against a hang: reaching it fails. The outcome is read from Schemathesis's
own JSON run report (cases generated, failures, errors) and JUnit report
(one test case per operation), never from its printed text.

The server (debug build) runs on a free loopback port with an admin token and
the same feedback token, so /admin/reload and the label-writing endpoints
(/feedback, /feedback/batch, /examples) are fuzzed with valid credentials, and
with feedback.accept_examples (and keep_text) on, so is POST /examples past
its 404; then it must have survived, counted no 5xx itself and logged no
error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, note_logs_on_failure, start_server

SCHEMATHESIS_VERSION = "4.32.5"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
MIN_CASES = int(os.environ.get("FUZZ_MIN_CASES", "600"))
TIMEOUT = float(os.environ.get("FUZZ_TIMEOUT", "900"))
SEED = os.environ.get("FUZZ_SEED", "1")
# Two tokens: the server refuses one secret for both roles (whoever may send
# labels must not be able to reload models).
FEEDBACK_TOKEN = "api-fuzz-feedback-token"
ADMIN_TOKEN = "api-fuzz-admin-token"
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


@pytest.fixture(scope="module")
def server(nbserve_bin, tmp_path_factory, request):
    work = tmp_path_factory.mktemp("api-fuzz")
    (work / "models").mkdir()
    (work / "models" / "spam-nb.json").write_bytes((ROOT / "models" / "spam-nb.json").read_bytes())
    server = start_server(nbserve_bin, work, {
        "ADMIN__TOKEN": ADMIN_TOKEN, "FEEDBACK__TOKEN": FEEDBACK_TOKEN, "FEEDBACK__LOG_PATH": work / "feedback.jsonl",
        "FEEDBACK__KEEP_TEXT": "true", "FEEDBACK__ACCEPT_EXAMPLES": "true"})
    yield server
    server.stop()
    note_logs_on_failure(request, {"nbserve (api-fuzz)": server.log_path})


class Run:
    """One `st run`: its exit status, output and reports."""

    def __init__(self, status: int | None, output: str, report: dict, operations: dict[str, list[str]]):
        self.status, self.output, self.report, self.operations = status, output, report, operations


@pytest.fixture(scope="module")
def fuzzed(server, tmp_path_factory, figures) -> Run:
    work = tmp_path_factory.mktemp("schemathesis")
    st = Path(sys.executable).parent / "st"
    # Every operation carries the feedback token but /admin/reload, which
    # carries the admin token (schemathesis.toml is read from the working
    # directory; a --header would override both).
    (work / "schemathesis.toml").write_text(
        f'headers = {{ Authorization = "Bearer {FEEDBACK_TOKEN}" }}\n\n'
        f'[[operations]]\ninclude-path = "/admin/reload"\n'
        f'headers = {{ Authorization = "Bearer {ADMIN_TOKEN}" }}\n')
    cmd = [str(st), "run", f"{server.url}/openapi.json", "--url", server.url, "--checks", CHECKS,
           "--max-examples", str(EXAMPLES), "--seed", SEED,
           "--workers", "2", "--request-timeout", "20", "--warnings", "off", "--report", "junit,json",
           "--report-junit-path", str(work / "junit.xml"), "--report-json-path", str(work / "report.json")]
    try:
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=TIMEOUT)
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        status, output = None, f"schemathesis did not finish within FUZZ_TIMEOUT={TIMEOUT:g}s\n{e.stdout or ''}"
    try:
        report = json.loads((work / "report.json").read_text())
    except (OSError, ValueError):
        report = {}
    operations = {}
    if (work / "junit.xml").is_file():
        for case in ET.parse(work / "junit.xml").getroot().iter("testcase"):
            operations[case.get("name")] = [(c.get("message") or c.text or c.tag)[:2000] for c in case
                                            if c.tag in ("failure", "error")]
    cases = (report.get("test_cases") or {}).get("generated")
    figures("schemathesis", f"{report.get('schemathesis_version', '?')} (pinned {SCHEMATHESIS_VERSION}): {cases} "
                            f"test cases over {len(operations)} JUnit cases (operations + stateful), "
                            f"{EXAMPLES} examples per operation, seed {SEED}, {report.get('running_time', 0):.1f} s")
    return Run(status, output, report, operations)


def test_schemathesis_finds_no_5xx_undocumented_status_schema_or_content_type(fuzzed):
    failed = {name: problems for name, problems in fuzzed.operations.items() if problems}
    assert fuzzed.status == 0 and not failed and not fuzzed.report.get("failures") \
        and not fuzzed.report.get("errors"), \
        f"exit {fuzzed.status}; failing operations: {json.dumps(failed, indent=1)[:6000]}\n{fuzzed.output[-6000:]}"


def test_schemathesis_tested_every_operation(fuzzed):
    ops = fuzzed.report.get("operations") or {}
    assert ops.get("total") and ops.get("tested") == ops.get("total") and not ops.get("errored"), ops


def test_schemathesis_generated_enough_test_cases(fuzzed):
    generated = (fuzzed.report.get("test_cases") or {}).get("generated")
    assert generated is not None and generated >= MIN_CASES, f"{generated} generated, at least {MIN_CASES} needed"


def test_the_server_survived(server, fuzzed):
    assert server.alive()


def test_the_server_counted_no_5xx(server, fuzzed):
    # Independent of schemathesis: the server's own count of 5xx answers.
    metrics = server.get("/metrics").body.decode()
    fives = [line for line in metrics.splitlines() if re.match(r'nbserve_http_requests_total\{.*status="5', line)]
    assert not fives, fives


def test_no_error_or_panic_in_the_server_log(server, fuzzed):
    bad = [line for line in server.log_text().splitlines() if re.search(r'"level":"ERROR"|panicked', line)]
    assert not bad, bad[:10]
