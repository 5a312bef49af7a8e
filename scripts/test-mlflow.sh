#!/usr/bin/env bash
# nbserve against a real MLflow tracking server and model registry.
#
# Installs MLflow (scripts/install-mlflow.sh, pinned), starts `mlflow server`
# on a free loopback port with a SQLite backend store and a local artifact
# destination in a temporary directory, then checks:
#  - `train` with tracking: the run read back through MLflow's REST API has
#    the params, metrics equal to the artifact's evaluation, the tags, status
#    FINISHED, and the artifact downloads byte-identical to the local file;
#  - `tune` with tracking: the run holds the chosen point's cross-validation
#    mean/std, Brier, ECE, the temperature and the grid, equal to the artifact;
#  - `--register` gives versions 1, 2, 3; `promote` moves `champion` to 1 and
#    refuses the below-gate version 3 (exit 5, alias unchanged);
#  - a server on `models:/NAME@champion` polling every POLL_SECS (2 s): `/model` shows
#    registry version and run id; after `promote` to version 2 it switches
#    within two intervals under steady /predict traffic with zero failed
#    requests; pointing the alias at version 3 behind promote's back is
#    refused (logged, counted) and version 2 keeps serving;
#  - `retrain` with model.path = models:/NAME@champion (pointing at the
#    below-gate version): scores it on the holdout, registers version 4, moves
#    champion, the polling server follows, the run carries the verdict; a
#    retrain under --min-f1-macro 0.99 exits 5, registers nothing, run FAILED;
#    the same retrain again is unchanged: exit 0, nothing registered, run FINISHED;
#  - with MLflow stopped: `train` fails with exit 1 and one line that holds no
#    secret and leaves no file; the running server keeps serving; a server
#    starting on the unreachable registry exits 4.
# Prints `N passed, M failed`; exit 0 only when nothing failed.
#
# Env: NBSERVE_BIN (default: the debug build, built if missing), NBSERVE_CACHE.
# Only 127.0.0.1 and free ports are used; everything started is stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
started=$SECONDS
POLL_SECS=2
NAME=spam-test

step() { printf '\n== %s\n' "$*"; }
passed=0
failed=0
ok() { echo "ok   - $*"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-mlflow.XXXXXX")"
mlflow_pid=""
serve_pid=""
replica_pid=""
traffic_pid=""
stop() {
    local p
    for p in "$@"; do
        if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
}
# MLflow runs in its own session: its server forks job consumers (huey) that
# outlive a plain kill of the `mlflow` process, so the whole group is stopped.
stop_mlflow() {
    [[ -n "$mlflow_pid" ]] || return 0
    kill -TERM -- "-$mlflow_pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 -- "-$mlflow_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL -- "-$mlflow_pid" 2>/dev/null || true
    wait "$mlflow_pid" 2>/dev/null || true
    mlflow_pid=""
}
cleanup() {
    local rc=$?
    stop "$traffic_pid" "$serve_pid" "$replica_pid"
    stop_mlflow
    if [[ $rc -ne 0 || $failed -ne 0 ]]; then
        for log in "$tmp"/serve.log "$tmp"/mlflow.log; do
            [[ -f "$log" ]] && { echo "--- last lines of ${log##*/}"; tail -n 20 "$log"; }
        done
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/lib/poll.sh
source "$ROOT/scripts/lib/poll.sh"

# json FILE-OR-- EXPRESSION: evaluates a Python expression over the JSON `d`.
json() {
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1]) if sys.argv[1] != "-" else sys.stdin); print(eval(sys.argv[2]))' "$@"
}

step "install MLflow and build nbserve"
MLFLOW_BIN="$(scripts/install-mlflow.sh | tail -n1)"
BIN="${NBSERVE_BIN:-}"
if [[ -z "$BIN" ]]; then
    cargo build --quiet --bin nbserve
    # shellcheck source=scripts/lib/cargo.sh
    source "$ROOT/scripts/lib/cargo.sh"
    BIN="$(cargo_bin debug nbserve)"
fi

step "start mlflow server (SQLite store, local artifact destination)"
MLFLOW_PORT="$(free_port)"
MLFLOW="http://127.0.0.1:$MLFLOW_PORT"
setsid "$MLFLOW_BIN/mlflow" server --backend-store-uri "sqlite:///$tmp/mlflow.db" \
    --artifacts-destination "$tmp/artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --workers 1 >"$tmp/mlflow.log" 2>&1 &
mlflow_pid=$!
wait_for 120 "mlflow /health" curl -sf "$MLFLOW/health"
echo "mlflow $("$MLFLOW_BIN/mlflow" --version | awk '{print $NF}') on $MLFLOW after $((SECONDS - started))s"

export MLFLOW_TRACKING_URI="$MLFLOW" MLFLOW_EXPERIMENT_NAME=nbserve-test
# The small sample data gives F1 macro ~0.83 (alpha 1, 0.1) and ~0.41 (alpha
# 50): a gate between them, independent of the shipped default.
export NBSERVE__GATE__MIN_F1_MACRO=0.75
api() { curl -sf "$MLFLOW/api/2.0/mlflow/$1"; }

# train VERSION ALPHA: trains tests/data/sample.csv and registers the run.
train() {
    "$BIN" train --data tests/data/sample.csv --out "$tmp/v$1.json" --name "$NAME" \
        --model-version "$1" --alpha "$2" --register "$NAME" --git-commit 0123abc \
        >"$tmp/train$1.out" 2>"$tmp/train$1.err"
}

step "train with tracking; read the run back through MLflow's REST API"
check "train v1 with tracking exits 0" train 1 1.0
RUN1="$(json "$tmp/v1.json" 'd.get("mlflow_run_id")')"
check "the artifact holds the run id" test "${#RUN1}" -eq 32
api "runs/get?run_id=$RUN1" >"$tmp/run1.json"
cat >"$tmp/compare.py" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))["run"]
art = json.load(open(sys.argv[2]))
params = {p["key"]: p["value"] for p in run["data"]["params"]}
metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
ev = art["evaluation"]
want_metrics = {"f1_macro": ev["f1_macro"], "balanced_accuracy": ev["balanced_accuracy"],
                "accuracy": ev["accuracy"]}
for c in ev["per_class"]:
    for k in ("precision", "recall", "f1"):
        want_metrics[f"{k}.{c['label']}"] = c[k]
want_params = {"alpha": "1", "seed": "42", "test_size": "0.2",
               "dataset.sha256": art["dataset"]["sha256"],
               "dataset.documents": str(art["dataset"]["documents"]),
               "vectorizer.binary": "true", "vectorizer.lowercase": "true"}
want_tags = {"mlflow.source.name": "nbserve train", "mlflow.source.git.commit": "0123abc",
             "nbserve.model_name": art["model"]["name"],
             "nbserve.model_version": art["model"]["version"]}
problems = []
problems += [f"metric {k}: {metrics.get(k)!r} != {v!r}" for k, v in want_metrics.items() if metrics.get(k) != v]
problems += [f"param {k}: {params.get(k)!r} != {v!r}" for k, v in want_params.items() if params.get(k) != v]
problems += [f"tag {k}: {tags.get(k)!r} != {v!r}" for k, v in want_tags.items() if tags.get(k) != v]
for k in ("training_seconds",):
    if not metrics.get(k, -1) > 0: problems.append(f"metric {k} missing")
for k in ("nbserve_version", "dataset.bytes", "vectorizer.token_pattern"):
    if k not in params: problems.append(f"param {k} missing")
if run["info"]["status"] != "FINISHED": problems.append("status " + run["info"]["status"])
print("\n".join(problems) or f"{len(want_metrics)} metrics, {len(want_params)} params, {len(want_tags)} tags match")
sys.exit(1 if problems else 0)
EOF
check "run params, metrics (= the artifact's evaluation), tags, FINISHED" \
    python3 "$tmp/compare.py" "$tmp/run1.json" "$tmp/v1.json"
artifact_uri="$(json "$tmp/run1.json" 'd["run"]["info"]["artifact_uri"]')"
proxied="$MLFLOW/api/2.0/mlflow-artifacts/artifacts/${artifact_uri#mlflow-artifacts:/}"
curl -sf "$proxied/model/model.json" -o "$tmp/downloaded.json" || true
check "the run's model artifact downloads byte-identical" cmp -s "$tmp/downloaded.json" "$tmp/v1.json"
check "the evaluation table is a run artifact" \
    bash -c "curl -sf '$proxied/evaluation.txt' | grep -q 'F1 macro'"

printf 'text,label\nonly one class here,ham\nand another,ham\n' >"$tmp/one-class.csv"
set +e
"$BIN" train --data "$tmp/one-class.csv" --out "$tmp/bad.json" 2>"$tmp/bad.err"
rc=$?
set -e
check "train that fails after its run began exits 4 ($(tail -n1 "$tmp/bad.err" | head -c 90))" test "$rc" -eq 4
experiment="$(json "$tmp/run1.json" 'd["run"]["info"]["experiment_id"]')"
curl -sf -X POST -H 'content-type: application/json' \
    -d "{\"experiment_ids\":[\"$experiment\"],\"filter\":\"attributes.status = 'FAILED'\"}" \
    "$MLFLOW/api/2.0/mlflow/runs/search" >"$tmp/failed.json"
error_line="$(tail -n1 "$tmp/bad.err")"
check "... and its run is FAILED with that error as a tag" test "$(NBSERVE_ERR="${error_line#nbserve: }" json "$tmp/failed.json" \
    '[t["value"] for r in d.get("runs", []) for t in r["data"]["tags"] if t["key"] == "nbserve.error"] == [__import__("os").environ["NBSERVE_ERR"]]')" = True

step "tune with tracking: the cross-validation and calibration figures in the run"
check "tune (2 alphas x 2 min_df, 3 folds) with tracking exits 0" \
    "$BIN" tune --data tests/data/sample.csv --out "$tmp/tuned.json" --name "$NAME-tuned" \
    --alpha 0.1,1 --min-df 1,2 --max-features 0 --folds 3 >"$tmp/tune.out" 2>"$tmp/tune.err"
TUNE_RUN="$(json "$tmp/tuned.json" 'd.get("mlflow_run_id")')"
api "runs/get?run_id=$TUNE_RUN" >"$tmp/tune-run.json"
cat >"$tmp/compare-tune.py" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))["run"]
art = json.load(open(sys.argv[2]))
params = {p["key"]: p["value"] for p in run["data"]["params"]}
metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
tuning, ev = art["tuning"], art["evaluation"]
best = tuning["results"][tuning["best"]]
want = {"cv.f1_macro.mean": best["f1_macro"]["mean"], "cv.f1_macro.std": best["f1_macro"]["std"],
        "brier_score": ev["brier_score"], "ece": ev["ece"], "f1_macro": ev["f1_macro"]}
problems = [f"metric {k}: {metrics.get(k)!r} != {v!r}" for k, v in want.items() if metrics.get(k) != v]
if params.get("tune.folds") != "3":
    problems.append(f"tune.folds {params.get('tune.folds')!r}")
if params.get("tune.grid_points") != str(len(tuning["results"])):
    problems.append(f"tune.grid_points {params.get('tune.grid_points')!r}")
if float(params.get("calibration.temperature", "nan")) != art["calibration"]["temperature"]:
    problems.append("calibration.temperature")
for k in ("vectorizer.min_df", "vectorizer.max_df", "vectorizer.max_features", "model", "tune.grid"):
    if k not in params:
        problems.append(f"param {k} missing")
if tags.get("mlflow.source.name") != "nbserve tune":
    problems.append("mlflow.source.name")
if run["info"]["status"] != "FINISHED":
    problems.append("status " + run["info"]["status"])
print("\n".join(problems) or "cv, calibration and grid figures match the artifact")
sys.exit(1 if problems else 0)
EOF
check "tune's run: CV mean/std, Brier, ECE, temperature, grid (= the artifact)" \
    python3 "$tmp/compare-tune.py" "$tmp/tune-run.json" "$tmp/tuned.json"

step "register versions; promote behind the gate"
check "train v2 (alpha 0.1) registers" train 2 0.1
check "train v3 (alpha 50, below the gate) registers" train 3 50
check "registry has versions 1..3 from their runs" bash -c "
    for v in 1 2 3; do
        run=\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"mlflow_run_id\"])' '$tmp/v'\$v.json)
        curl -sf '$MLFLOW/api/2.0/mlflow/model-versions/get?name=$NAME&version='\$v | grep -q \"\\\"run_id\\\": *\\\"\$run\\\"\" || exit 1
    done"
check "promote v1 to champion" "$BIN" promote --model-name "$NAME" --version 1 --alias champion
set +e
"$BIN" promote --model-name "$NAME" --version 3 --alias champion 2>"$tmp/promote3.err"
rc=$?
set -e
check "promote of below-gate v3 exits 5 ($(head -c 120 "$tmp/promote3.err"))" test "$rc" -eq 5
champion() { api "registered-models/alias?name=$NAME&alias=champion" | json - 'd["model_version"]["version"]'; }
check "champion still points at v1" test "$(champion)" = 1

step "serve models:/$NAME@champion, polling every ${POLL_SECS}s (two replicas)"
# serve_champion PORT LOG: a server on the champion, in the background.
serve_champion() {
    env NBSERVE__SERVER__HOST=127.0.0.1 NBSERVE__SERVER__PORT="$1" NBSERVE__LOG__FORMAT=json \
        NBSERVE__MODEL__PATH="models:/$NAME@champion" NBSERVE__MODEL__POLL_INTERVAL_SECS="$POLL_SECS" \
        NBSERVE__GATE__MIN_F1_MACRO=0.8 "$BIN" serve >"$2" 2>&1 &
}
PORT="$(free_port)"
SRV="http://127.0.0.1:$PORT"
serve_champion "$PORT" "$tmp/serve.log"
serve_pid=$!
# A second replica that gets no request at all while the champion moves.
REPLICA="http://127.0.0.1:$(free_port)"
serve_champion "${REPLICA##*:}" "$tmp/replica.log"
replica_pid=$!
wait_for 30 "nbserve /health" curl -sf "$SRV/health"
wait_for 30 "replica /health" curl -sf "$REPLICA/health"
curl -sf "$SRV/model" >"$tmp/model1.json"
check "/model shows registry version 1 and run id" \
    test "$(json "$tmp/model1.json" '(d["registry_version"], d["mlflow_run_id"])')" = "('1', '$RUN1')"
check "nbserve_model_info carries source_version and source_run_id" \
    bash -c "curl -sf '$SRV/metrics' | grep -q 'nbserve_model_info{.*source_run_id=\"$RUN1\",source_version=\"1\"'"
check "the start-up log line names registry version and run id" \
    grep -q "\"registry_version\":\"1\",\"run_id\":\"$RUN1\"" "$tmp/serve.log"

# Steady /predict traffic (4 clients) until SIGTERM; prints ok/failed counts
# and the model versions seen, in order.
cat >"$tmp/traffic.py" <<'EOF'
import json, signal, sys, threading, urllib.request
url, out = sys.argv[1], sys.argv[2]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
lock = threading.Lock()
stats = {"ok": 0, "failed": 0, "versions": []}
def client():
    body = json.dumps({"text": "win a free prize now, click here"}).encode()
    while not stop.is_set():
        req = urllib.request.Request(url, body, {"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                v = json.load(r)["model_version"]
            with lock:
                stats["ok"] += 1
                if not stats["versions"] or stats["versions"][-1] != v:
                    stats["versions"].append(v)
        except Exception as e:
            with lock:
                stats["failed"] += 1
threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads: t.start()
while not stop.wait(0.1): pass
for t in threads: t.join()
json.dump(stats, open(out, "w"))
EOF
python3 "$tmp/traffic.py" "$SRV/predict" "$tmp/traffic.json" &
traffic_pid=$!
sleep 1

step "move champion to v2: the server follows"
"$BIN" promote --model-name "$NAME" --version 2 --alias champion
moved=$(date +%s.%N)
for server in "$SRV" "$REPLICA"; do
    wait_for 10 "registry version 2" bash -c "curl -sf '$server/model' | grep -q '\"registry_version\":\"2\"'" || true
    switched=$(date +%s.%N)
    switch_secs=$(python3 -c "print(round($switched - $moved, 2))")
    what="the server under traffic"
    [[ "$server" == "$REPLICA" ]] && what="the idle replica"
    # Two poll intervals, plus 2 s for a loaded 2-core CI machine (the idle
    # replica is measured after the busy server, so its figure includes that wait).
    check "$what switched to v2 within ${switch_secs}s (<= 2 intervals + 2 s = $((2 * POLL_SECS + 2))s)" \
        python3 -c "import sys; sys.exit(0 if $switch_secs <= 2 * $POLL_SECS + 2 else 1)"
done

step "point champion at the below-gate v3 behind promote's back"
curl -sf -X POST -H 'content-type: application/json' \
    -d "{\"name\":\"$NAME\",\"alias\":\"champion\",\"version\":\"3\"}" \
    "$MLFLOW/api/2.0/mlflow/registered-models/alias" >/dev/null
check "the poll refuses v3 (nbserve_model_polls_total{result=\"refused\"} 1)" \
    wait_for 10 "a refused poll" bash -c "curl -sf '$SRV/metrics' | grep -q 'nbserve_model_polls_total{result=\"refused\"} 1'"
sleep $((2 * POLL_SECS))
check "v3 refused once, not retried while the alias stays" \
    bash -c "curl -sf '$SRV/metrics' | grep -q 'nbserve_model_polls_total{result=\"refused\"} 1$'"
check "the refusal is logged with the gate's reason" grep -q 'reload rejected.*below the gate' "$tmp/serve.log"
check "v2 keeps serving" bash -c "curl -sf '$SRV/model' | grep -q '\"registry_version\":\"2\"'"
check "the idle replica refused v3 too and serves v2" bash -c "curl -sf '$REPLICA/model' | grep -q '\"registry_version\":\"2\"' &&
    curl -sf '$REPLICA/metrics' | grep -q 'nbserve_model_polls_total{result=\"refused\"} 1$'"
stop "$replica_pid"
replica_pid=""

stop "$traffic_pid"
traffic_pid=""
check "traffic: $(json "$tmp/traffic.json" '"%d ok, %d failed, versions %s" % (d["ok"], d["failed"], d["versions"])')" \
    test "$(json "$tmp/traffic.json" 'd["failed"] == 0 and d["ok"] > 0 and d["versions"] == ["1", "2"]')" = True

step "retrain against models:/$NAME@champion: register, move the alias, the server follows"
"$BIN" split --data tests/data/sample.csv --train-out "$tmp/rt-train.csv" \
    --test-out "$tmp/rt-holdout.csv" --test-size 0.3 --seed 7 >/dev/null
# retrain_champion REPORT ARGS...: retrain with the champion as model.path.
retrain_champion() {
    local report=$1
    shift
    env NBSERVE__MODEL__PATH="models:/$NAME@champion" NBSERVE__MODEL__DIR="$tmp/rt-models" \
        "$BIN" retrain --data "$tmp/rt-train.csv" --holdout "$tmp/rt-holdout.csv" \
        --alpha 0.1,1 --min-df 1 --max-features 0 --folds 3 --report "$report" "$@" \
        >"$report.out" 2>"$report.err"
}
versions_of() { # the registered versions of $NAME, sorted
    curl -sf -G --data-urlencode "filter=name='$NAME'" "$MLFLOW/api/2.0/mlflow/model-versions/search" |
        json - 'sorted(int(v["version"]) for v in d["model_versions"])'
}
set +e
retrain_champion "$tmp/rt1.json"
rc=$?
set -e
check "retrain over the below-gate champion v3 exits 0 ($(tail -n1 "$tmp/rt1.json.out" | head -c 120))" test "$rc" -eq 0
check "report: current = registry v3, new version 4 registered, champion moved" \
    test "$(json "$tmp/rt1.json" '(d["verdict"], d["current"]["registry_version"], d["promoted"]["registered"])')" \
    = "('promoted', '3', {'name': '$NAME', 'version': '4', 'alias': 'champion'})"
check "champion points at v4" test "$(champion)" = 4
check "the server switches to registry version 4" \
    wait_for $((3 * POLL_SECS)) "registry version 4" bash -c "curl -sf '$SRV/model' | grep -q '\"registry_version\":\"4\"'"
RT_RUN="$(json "$tmp/rt1.json" 'd["mlflow_run_id"]')"
api "runs/get?run_id=$RT_RUN" >"$tmp/rt-run.json"
check "the retrain run is FINISHED with verdict, both holdout F1s and the delta" \
    test "$(json "$tmp/rt-run.json" '(d["run"]["info"]["status"], {t["key"]: t["value"] for t in d["run"]["data"]["tags"]}.get("nbserve.retrain.verdict"), sorted(m["key"] for m in d["run"]["data"]["metrics"] if m["key"].startswith(("holdout.", "gate."))))')" \
    = "('FINISHED', 'promoted', ['gate.no_regression.delta', 'holdout.candidate.f1_macro', 'holdout.current.f1_macro'])"
set +e
retrain_champion "$tmp/rt2.json" --min-f1-macro 0.99
rc=$?
set -e
check "a retrain below --min-f1-macro 0.99 exits 5 ($(tail -n1 "$tmp/rt2.json.err" | head -c 100))" test "$rc" -eq 5
check "... registers nothing and leaves champion on v4" \
    test "$(versions_of) $(champion)" = "[1, 2, 3, 4] 4"
RT2_RUN="$(json "$tmp/rt2.json" 'd["mlflow_run_id"]')"
check "... and its run is logged, FAILED, verdict rejected" \
    test "$(api "runs/get?run_id=$RT2_RUN" | json - '(d["run"]["info"]["status"], {t["key"]: t["value"] for t in d["run"]["data"]["tags"]}.get("nbserve.retrain.verdict"))')" \
    = "('FAILED', 'rejected')"
set +e
retrain_champion "$tmp/rt3.json"
rc=$?
set -e
check "the same retrain again exits 0 ($(tail -n1 "$tmp/rt3.json.out" | head -c 120))" test "$rc" -eq 0
check "... verdict unchanged: v4 predicts exactly as the candidate, nothing promoted" \
    test "$(json "$tmp/rt3.json" '(d["verdict"], d["current"]["registry_version"], d["promoted"])')" = "('unchanged', '4', None)"
check "... registers nothing and leaves champion on v4" \
    test "$(versions_of) $(champion)" = "[1, 2, 3, 4] 4"
RT3_RUN="$(json "$tmp/rt3.json" 'd["mlflow_run_id"]')"
check "... and its run is logged, FINISHED, verdict unchanged" \
    test "$(api "runs/get?run_id=$RT3_RUN" | json - '(d["run"]["info"]["status"], {t["key"]: t["value"] for t in d["run"]["data"]["tags"]}.get("nbserve.retrain.verdict"))')" \
    = "('FINISHED', 'unchanged')"

step "stop MLflow"
stop_mlflow
set +e
MLFLOW_TRACKING_USERNAME=nbserve MLFLOW_TRACKING_PASSWORD=s3cret-do-not-print \
    "$BIN" train --data tests/data/sample.csv --out "$tmp/v4.json" >/dev/null 2>"$tmp/train4.err"
rc=$?
set -e
check "train with MLflow down exits 1 ($(head -c 100 "$tmp/train4.err"))" test "$rc" -eq 1
check "... with one line" test "$(wc -l <"$tmp/train4.err")" -eq 1
check "... holding no secret" bash -c "! grep -q s3cret '$tmp/train4.err'"
check "... and no artifact file" test ! -e "$tmp/v4.json"
check "the server keeps serving predictions" \
    bash -c "for i in 1 2 3 4 5; do curl -sf -X POST -H 'content-type: application/json' -d '{\"text\":\"hello\"}' '$SRV/predict' >/dev/null || exit 1; done"
check "failed polls are counted" \
    wait_for 15 "a failed poll" bash -c "curl -sf '$SRV/metrics' | grep -q 'nbserve_model_polls_total{result=\"error\"} [1-9]'"
check "... and the model stays v4 (put there by retrain)" bash -c "curl -sf '$SRV/model' | grep -q '\"registry_version\":\"4\"'"
set +e
env NBSERVE__SERVER__PORT=0 NBSERVE__MODEL__PATH="models:/$NAME@champion" \
    "$BIN" serve >/dev/null 2>"$tmp/serve-down.err"
rc=$?
set -e
check "a server starting on the unreachable registry exits 4" test "$rc" -eq 4

echo
echo "MLflow suite: $((SECONDS - started))s"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
