"""Prefect flow for the retrain loop: fetch → retrain (tune, two gates, promote) → report.

A thin layer: every task calls the `nbserve` binary (or a fetch command) and
the binary decides; the flow only orders the steps, keeps the record and turns
the outcome into a flow-run state. A rejection by either gate (`nbserve
retrain` exit 5) makes the flow run FAILED with the report's reason; a
promotion completes it, and so does verdict `unchanged` (exit 0: the
candidate predicts exactly as the model in service, e.g. no new labels since
the last run, so nothing was promoted and nothing changed).

    # once, now (local ephemeral Prefect: no server to start)
    python orchestration/prefect/flow.py run --data data/train.csv \
        --feedback-log 'feedback/*.jsonl' --holdout data/holdout.csv --config nbserve.toml

    # one model of a many-model server (`nbserve retrain --served-model spam-cnb`):
    # its own source, versioned store and gate; the other models are not touched
    python orchestration/prefect/flow.py run --served-model spam-cnb --data ... --holdout ...

    # a cron (or --interval SECONDS) deployment served by this process against a
    # Prefect server (`prefect server start`; PREFECT_API_URL=http://HOST:4200/api):
    # the local ephemeral API cannot schedule, so `serve` refuses to run without one
    python orchestration/prefect/flow.py serve --cron "0 3 * * *" --data ... --holdout ...

Both modes run the work in a child process group (supervise.py): SIGINT
(Ctrl-C), SIGTERM or SIGHUP stop it gracefully, and whatever it started that
has not stopped 30 s later is killed. Local ephemeral mode waits up to 180 s for its temporary API
(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, when not set already): it
migrates a fresh database first, slow on a small busy machine.

Options after `--` go to `nbserve retrain` unchanged (grid, --keep, tracking, ...).
Traces: `nbserve retrain` joins the trace of the current OpenTelemetry span
(Prefect's task-run span when an OpenTelemetry SDK is configured), else the
one this process is given in TRACEPARENT/TRACESTATE (`trace_env`); it exports
with NBSERVE__TRACE__ENABLED=true and the OTEL_* variables (docs/monitoring.md).
NBSERVE_BIN picks the binary (default `nbserve` on PATH). Installed with
scripts/install-prefect.sh (prefect pinned and hash-checked).

Credentials: what the flow logs, and the failure messages and the report
artifact it records, go through `redact`: values of secret-looking options
(`--token X`, `--password=X`, `-u user:pass`), of secret-looking variables
(`API_TOKEN=X`), URL user-info (`https://user:pass@host`), secret-looking URL
query parameters and Authorization headers become `***`. Prefect still stores
a flow run's parameters as given (`--fetch-cmd`, the options after `--`), so
give credentials through the environment instead (MLFLOW_TRACKING_TOKEN,
MLFLOW_TRACKING_USERNAME/PASSWORD, the fetch tool's own variables): the
subprocesses inherit it, and the flow never logs it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

if __name__ == "__main__" and os.environ.get("NBSERVE_FLOW_CHILD") != "1":
    # The supervising process: stdlib only, it never imports Prefect.
    from supervise import supervise

    sys.exit(supervise(__file__, sys.argv[1:]))

# Prefect's default wait for the temporary API of local ephemeral mode (20 s)
# is shorter than its database migration takes on a small, busy machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, get_run_logger, task  # noqa: E402 (after the settings above)
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.settings import PREFECT_API_URL  # noqa: E402

# `nbserve retrain` exit codes (docs/reference/exit-codes.md; docs/retrain.md).
EXIT_OK = 0  # verdict "promoted" or "unchanged"
EXIT_REJECTED = 5
# The verdicts each of those exit codes goes with.
VERDICTS_BY_EXIT = {EXIT_OK: ("promoted", "unchanged"), EXIT_REJECTED: ("rejected",)}


class RetrainRejected(Exception):
    """A gate rejected the candidate: nothing was promoted (exit 5)."""


class RetrainError(Exception):
    """`nbserve retrain` failed for another reason (bad data, settings, lock busy, ...)."""


def _tail(text: str, lines: int = 20) -> str:
    return redact("\n".join(text.strip().splitlines()[-lines:]))


REDACTED = "***"
# Names that say they hold a credential: anywhere in the name (API_TOKEN,
# PGPASSWORD, x-api-key) ...
_SECRET_WORDS = re.compile(
    r"token|passw(?:or)?d|secret|api[-_]?key|access[-_]?key|private[-_]?key|credential|authorization")
# ... or as a whole part of it (--pass, MYSQL_PWD, sig=, Cookie, --auth).
_SECRET_PARTS = {"pass", "pwd", "sig", "signature", "session", "cookie", "auth"}
# Options whose next argument is a credential whatever their name: curl's -u user:pass.
_SECRET_OPTIONS = {"-u", "--user", "--proxy-user"}
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
_ASSIGNMENT = re.compile(r"""(?<![\w.-])(?P<name>-*[a-z_][\w.-]*)=(?P<value>'[^']*'|"[^"]*"|[^\s&;#'"]+)""", re.IGNORECASE)
_JSON_FIELD = re.compile(r'"(?P<name>[^"\\]+)"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\]|\\.)*)"')
_HEADER = re.compile(r"(?<![\w.-])(?P<name>[a-z][\w-]*)(?P<sep>\s*:\s*(?:(?:bearer|basic|token|digest)\s+)?)(?P<value>[^\s'\"]+)",
                     re.IGNORECASE)
# `--token X` / `-u user:pass` inside one string (a `sh -c '...'` script).
_OPTION_VALUE = re.compile(r"""(?<!\S)(?P<name>--?[a-z][\w-]*)(?P<sep>\s+)(?P<value>'[^']*'|"[^"]*"|[^\s'"-]\S*)""",
                           re.IGNORECASE)
_BEARER = re.compile(r"\b(bearer|basic)\s+[\w.~+/=-]{8,}", re.IGNORECASE)


def _secret_name(name: str) -> bool:
    """A variable, option, header, query parameter or JSON field name that
    says it holds a credential (`--token`, `API_TOKEN`, `Authorization`);
    not one naming where a credential is (`--token-file`, `TOKEN_FILE`)."""
    n = name.lstrip("-").lower()
    if re.search(r"[-_.](file|path|dir)$", n):
        return False
    return bool(_SECRET_WORDS.search(n)) or bool(_SECRET_PARTS & set(re.split(r"[-_.]", n)))


def redact(text: str) -> str:
    """`text` with every credential it shows replaced by `***`: URL user-info
    (`https://user:pass@host`, a token as the user name too), the value of
    secret-looking NAME=VALUE (variables, `--password=X`, URL query
    parameters), `Name: value` headers and JSON fields, the word after a
    secret-looking option (`--token X`, `-u user:pass`), and bearer tokens."""
    def value_of(m: re.Match) -> str:
        if not (_secret_name(m["name"]) or m["name"] in _SECRET_OPTIONS):
            return m[0]
        return m[0][:m.start("value") - m.start()] + REDACTED + m[0][m.end("value") - m.start():]

    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    for pattern in (_ASSIGNMENT, _JSON_FIELD, _HEADER, _OPTION_VALUE):
        text = pattern.sub(value_of, text)
    return _BEARER.sub(rf"\1 {REDACTED}", text)


def redact_argv(argv: list[str]) -> str:
    """A command line for the log: `shlex.join(argv)`, each argument through
    `redact`, and the argument after a secret-looking option (`--token X`,
    `--password X`, `-u user:pass`) replaced by `***`."""
    out: list[str] = []
    hide = False
    for arg in argv:
        out.append(REDACTED if hide else redact(arg))
        hide = (not hide and arg.startswith("-") and "=" not in arg
                and (arg in _SECRET_OPTIONS or _secret_name(arg)))
    return shlex.join(out)


def redact_command(command: str) -> str:
    """A command string (`--fetch-cmd`) for the log, split and redacted like
    `redact_argv`; `redact` alone when it does not split."""
    try:
        return redact_argv(shlex.split(command))
    except ValueError:
        return redact(command)


@task(name="fetch-data")
def fetch_data(fetch_cmd: str | None, data: list[str], feedback_logs: list[str], holdout: str) -> dict[str, Any]:
    """Runs the optional fetch command, then resolves the inputs: each
    feedback-log glob expands in sorted name order (`nbserve retrain` lets the
    last label for a text win, so name dated parts oldest first, e.g.
    feedback-2026-11-30.jsonl); missing base data is an error, no feedback log
    at all is not (the retrain then runs on the base data)."""
    logger = get_run_logger()
    if fetch_cmd:
        logger.info("fetch: %s", redact_command(fetch_cmd))
        done = subprocess.run(shlex.split(fetch_cmd), capture_output=True, text=True)
        if done.returncode != 0:
            raise RetrainError(f"fetch command exited {done.returncode}: {_tail(done.stderr or done.stdout)}")
    missing = [p for p in [*data, holdout] if not Path(p).is_file()]
    if missing:
        raise RetrainError(f"input files missing: {', '.join(missing)}")
    logs: list[str] = []
    for pattern in feedback_logs:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else ([pattern] if Path(pattern).is_file() else [])
        if not matched:
            logger.warning("no feedback log matches %s", pattern)
        logs.extend(m for m in matched if m not in logs)
    sizes = {p: Path(p).stat().st_size for p in logs}
    logger.info("inputs: %d base CSV(s), %d feedback log(s) (%d bytes), holdout %s",
                len(data), len(logs), sum(sizes.values()), holdout)
    return {"data": data, "feedback_logs": logs, "holdout": holdout}


def trace_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` for `nbserve retrain`, with the W3C trace context it joins
    (docs/monitoring.md, Tracing) as TRACEPARENT/TRACESTATE: the current
    OpenTelemetry span's when there is a valid one (Prefect's run telemetry
    makes one per task run once an OpenTelemetry SDK is configured), else the
    flow's own TRACEPARENT/TRACESTATE, passed on as they are."""
    env = dict(environ)
    carrier: dict[str, str] = {}
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if trace.get_current_span().get_span_context().is_valid:
            TraceContextTextMapPropagator().inject(carrier)
    except ImportError:  # Prefect without the OpenTelemetry API: the variables only
        pass
    if "traceparent" in carrier:
        env["TRACEPARENT"] = carrier["traceparent"]
        env.pop("TRACESTATE", None)
        if carrier.get("tracestate"):
            env["TRACESTATE"] = carrier["tracestate"]
    return env


@task(name="retrain")
def retrain(nbserve: str, config: str | None, inputs: dict[str, Any], report_path: str,
            extra_args: list[str], served_model: str | None = None) -> dict[str, Any]:
    """`nbserve retrain ... --report FILE`: returns the exit code and the output tail.
    Exit 0 and 5 both leave a report; anything else is an error of the run."""
    cmd = [nbserve, "retrain"]
    if config:
        cmd += ["--config", config]
    if served_model:
        cmd += ["--served-model", served_model]
    for d in inputs["data"]:
        cmd += ["--data", d]
    for log in inputs["feedback_logs"]:
        cmd += ["--feedback-log", log]
    cmd += ["--holdout", inputs["holdout"], "--report", report_path, *extra_args]
    logger = get_run_logger()
    logger.info("running %s", redact_argv(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, env=trace_env(os.environ))
    if done.stdout.strip():
        logger.info("%s", _tail(done.stdout, 40))
    if done.returncode not in VERDICTS_BY_EXIT:
        raise RetrainError(f"nbserve retrain exited {done.returncode}: {_tail(done.stderr or done.stdout)}")
    return {"exit_code": done.returncode, "report_path": report_path}


@task(name="report")
def read_report(result: dict[str, Any]) -> dict[str, Any]:
    """Reads the JSON report, records it as a markdown artifact of the run and
    fails on a rejection (with the report's reason); `promoted` and
    `unchanged` complete."""
    logger = get_run_logger()
    try:
        report = json.loads(Path(result["report_path"]).read_text())
    except (OSError, ValueError) as err:
        raise RetrainError(f"no readable report at {result['report_path']}: {err}") from err
    verdict = report.get("verdict")
    candidate = report.get("candidate") or {}
    current = report.get("current") or {}
    cand_f1 = (candidate.get("holdout") or {}).get("f1_macro")
    cur_f1 = (current.get("holdout") or {}).get("f1_macro")
    summary = redact(f"verdict {verdict}: {report.get('reason')} (candidate {candidate.get('version')} "
                     f"holdout F1 macro {_fmt(cand_f1)}, current {current.get('version')} {_fmt(cur_f1)})")
    logger.info("%s", summary)
    create_markdown_artifact(
        key="nbserve-retrain-report",
        description="nbserve retrain report",
        markdown=redact("\n".join([
            f"## nbserve retrain: {verdict}",
            "",
            f"{report.get('reason')}",
            "",
            "| model | version | holdout F1 macro |",
            "|---|---|---|",
            f"| candidate | {candidate.get('version')} | {_fmt(cand_f1)} |",
            f"| current | {current.get('version')} | {_fmt(cur_f1)} |",
            "",
            "```json",
            json.dumps(report, indent=2)[:20000],
            "```",
        ])),
    )
    # The exit code decides; the report must agree with it.
    if verdict not in VERDICTS_BY_EXIT[result["exit_code"]]:
        raise RetrainError(f"exit code {result['exit_code']} disagrees with the report's verdict {verdict!r}")
    if verdict == "rejected":
        raise RetrainRejected(redact(f"candidate rejected: {report.get('reason')}"))
    if verdict == "unchanged":
        logger.info("nothing promoted: the candidate is identical to the model in service")
    return report


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"


@flow(name="nbserve-retrain", log_prints=True)
def retrain_flow(data: list[str], holdout: str, feedback_logs: list[str] | None = None,
                 config: str | None = None, nbserve: str | None = None, report_dir: str | None = None,
                 fetch_cmd: str | None = None, extra_args: list[str] | None = None,
                 served_model: str | None = None) -> dict[str, Any]:
    """Fetch the inputs, retrain with the two gates, read the report.
    `served_model` names the model of the server's repository to retrain
    (default: the default model).
    Completed: a new model was promoted, or the candidate was identical to the
    model in service (verdict unchanged, nothing changed). Failed: rejected
    (nothing changed) or an error."""
    nbserve = nbserve or os.environ.get("NBSERVE_BIN") or "nbserve"
    report_dir = report_dir or tempfile.mkdtemp(prefix="nbserve-retrain-")
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    report_path = str(Path(report_dir) / "retrain-report.json")
    inputs = fetch_data(fetch_cmd, data, feedback_logs or [], holdout)
    result = retrain(nbserve, config, inputs, report_path, extra_args or [], served_model)
    return read_report(result)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="nbserve retrain under Prefect: run once, or serve a scheduled deployment")
    p.add_argument("mode", choices=["run", "serve"],
                   help="run: one flow run now; serve: a scheduled deployment (needs PREFECT_API_URL)")
    p.add_argument("--data", action="append", required=True, help="base CSV (repeatable)")
    p.add_argument("--feedback-log", action="append", default=[], help="feedback log file or glob (repeatable)")
    p.add_argument("--holdout", required=True, help="fixed holdout CSV")
    p.add_argument("--config", help="nbserve settings file (model.path, model.dir, gate.min_f1_macro)")
    p.add_argument("--served-model", metavar="NAME",
                   help="the model of the server's repository to retrain (default: the default model)")
    p.add_argument("--nbserve", help="nbserve binary (default: $NBSERVE_BIN or nbserve on PATH)")
    p.add_argument("--report-dir", help="where the JSON report goes (default: a new temp dir per run)")
    p.add_argument("--fetch-cmd", help="command run first to refresh the base data (e.g. scripts/fetch-data.sh)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", help="serve: cron schedule (default $NBSERVE_RETRAIN_CRON or '0 3 * * *')")
    when.add_argument("--interval", type=_positive_int, metavar="SECONDS", help="serve: run every SECONDS instead")
    p.add_argument("--name", default="nbserve-retrain-nightly", help="serve: deployment name")
    return p


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = _parser().parse_args(argv)
    params = {
        "data": args.data, "holdout": args.holdout, "feedback_logs": args.feedback_log,
        "config": args.config, "nbserve": args.nbserve, "report_dir": args.report_dir,
        "fetch_cmd": args.fetch_cmd, "extra_args": extra, "served_model": args.served_model,
    }
    if args.mode == "serve":
        return serve(args, params)
    state = retrain_flow(**params, return_state=True)
    print(f"flow run state: {state.type.value} ({state.message})")
    return 0 if state.is_completed() else (EXIT_REJECTED if _rejected(state) else 1)


def serve(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """Serves the deployment on its schedule until stopped (one run at a
    time); refuses (exit 2, one line) without a Prefect server, since the
    temporary local API never starts scheduled runs."""
    if not PREFECT_API_URL.value():
        print("flow.py serve: no Prefect server to schedule on: start one (`prefect server start`) and set "
              "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api); `flow.py run` needs none", file=sys.stderr)
        return 2
    if args.interval:
        schedule = {"interval": args.interval}
    else:
        schedule = {"cron": args.cron or os.environ.get("NBSERVE_RETRAIN_CRON") or "0 3 * * *"}
    retrain_flow.serve(name=args.name, parameters=params, limit=1, **schedule)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, not {value}")
    return value


def _rejected(state: Any) -> bool:
    try:
        state.result()
    except RetrainRejected:
        return True
    except Exception:  # noqa: BLE001 - any other failure is "not a rejection"
        return False
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
