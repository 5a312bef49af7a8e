#!/usr/bin/env bash
# Offline checks of deploy/kubernetes/ (the kustomize base, every overlay and
# the KServe example):
#   - `kubectl kustomize DIR` renders each of them (kubectl's built-in kustomize v5)
#   - kubernetes-validate --strict (pinned and hash-checked in
#     scripts/check-kubernetes-requirements.txt, schemas bundled, Kubernetes 1.32)
#     accepts every built-in kind; custom resources (KServe's InferenceService)
#     have no bundled schema and are skipped, said so in the output; a control
#     (an unknown field in a Deployment) must be rejected
#   - the retrain CronJob (components/retrain, in overlays/production): Forbid
#     concurrency, a rejection (exit 5) fails the Job without retries, hardened
#     like the server (init container too), and it writes model.path on the
#     same PVC the replicas serve it from
#   - every NBSERVE__* variable a container gets (ConfigMap envFrom + env, also
#     configMapKeyRef and secretKeyRef) is
#     accepted by `nbserve config` with that exact environment (the admin token
#     file is replaced by a temporary one and a secretKeyRef value by a stand-in:
#     the Secrets do not exist here)
#   - probes: liveness on /health (or /v2/health/live), readiness on /ready (or
#     /v2/health/ready), a startup probe, all on the port the settings bind;
#     terminationGracePeriodSeconds > drain_delay_secs + shutdown_timeout_secs;
#     the pod runs as non-root with a read-only root filesystem, no privilege
#     escalation, all capabilities dropped and the RuntimeDefault seccomp profile
#     (its init containers too)
#   - scripts/lib/check_kubernetes.py: every serving pod finds a model at
#     model.path (in the image, or seeded onto its volume by an init container
#     whose script is run here); no Secret or token in any environment, the
#     admin and feedback token files from required Secret volumes;
#     NetworkPolicies admit only server.port from labelled peers and
#     Prometheus (nothing to the retrain pods); no service account token;
#     every image pinned to a release
#
#   scripts/check-kubernetes.sh            # builds the debug nbserve if needed
#   NBSERVE_BIN=path/to/nbserve scripts/check-kubernetes.sh
#
# kubectl: the one on PATH if its kustomize is v5, else Debian's `kubectl`
# package unpacked into ${NBSERVE_CACHE:-~/.cache/nbserve}/kubectl (scripts/lib/deb.sh;
# no Debian build number pinned). Prints one PASS/FAIL line per check and
# `N passed, M failed`; exits non-zero if any check failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
K8S_VERSION="1.32.0"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'PASS: %s\n' "$1"; }
fail() {
  FAILED=$((FAILED + 1)); printf 'FAIL: %s\n' "$1"
  if [[ $# -gt 1 && -n "$2" ]]; then printf '%s\n' "$2" | sed 's/^/      /'; fi
}
log() { echo "check-kubernetes: $*" >&2; }
# Python lines "PASS: ..." / "FAIL: ..." (+ indented detail) -> counters.
tally() {
  local line
  while IFS= read -r line; do
    case "$line" in
      PASS:*) PASSED=$((PASSED + 1)) ;;
      FAIL:*) FAILED=$((FAILED + 1)) ;;
    esac
    printf '%s\n' "$line"
  done
}

# ---------------------------------------------------------------- tools
kustomize_v5() { "$1" version --client 2>/dev/null | grep -q 'Kustomize Version: v5\.'; }
KUBECTL=""
if command -v kubectl >/dev/null && kustomize_v5 kubectl; then
  KUBECTL="$(command -v kubectl)"
elif [[ -x "$cache/kubectl/root/usr/bin/kubectl" ]] && kustomize_v5 "$cache/kubectl/root/usr/bin/kubectl"; then
  KUBECTL="$cache/kubectl/root/usr/bin/kubectl"
else
  # shellcheck source=scripts/lib/deb.sh
  source "$root/scripts/lib/deb.sh"
  if deb_unpack kubectl '^1\.(2[6-9]|[3-9][0-9])\.' "$cache/kubectl"; then
    KUBECTL="$cache/kubectl/root/usr/bin/kubectl"
  fi
fi
if [[ -z "$KUBECTL" ]]; then
  fail "kubectl with kustomize v5" "neither on PATH nor installable from the Debian archive"
  printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
  exit 1
fi
log "$("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')($KUBECTL)"

# shellcheck source=scripts/lib/venv.sh
source "$root/scripts/lib/venv.sh"
venv="$(pinned_venv kubernetes-validate scripts/check-kubernetes-requirements.txt)"
PY="$venv/bin/python"   # has PyYAML (a kubernetes-validate dependency)

BIN="${NBSERVE_BIN:-}"
if [[ -z "$BIN" ]]; then
  cargo build --quiet --bin nbserve
  # shellcheck source=scripts/lib/cargo.sh
  source scripts/lib/cargo.sh
  BIN="$(cargo_bin debug nbserve)"
fi

# ---------------------------------------------------------------- render
dirs=(deploy/kubernetes/base)
for d in deploy/kubernetes/overlays/*/ deploy/kubernetes/kserve/; do
  [[ -f "$d/kustomization.yaml" ]] && dirs+=("${d%/}")
done
rendered=()
for d in "${dirs[@]}"; do
  out="$work/$(echo "$d" | tr '/' '_').yaml"
  if err="$("$KUBECTL" kustomize "$d" 2>&1 >"$out")" && [[ -s "$out" ]]; then
    pass "kubectl kustomize $d renders"
    rendered+=("$d=$out")
  else
    fail "kubectl kustomize $d renders" "$err"
  fi
done
[[ ${#rendered[@]} -gt 0 ]] || { printf '%d passed, %d failed\n' "$PASSED" "$FAILED"; exit 1; }

# ---------------------------------------------------------------- schemas
# Built-in kinds only: split each rendering, skipping custom resources.
tally < <("$PY" - "$work" "${rendered[@]}" <<'PY'
import os, sys, yaml
work, *pairs = sys.argv[1:]
builtin = ("v1", "apps/v1", "autoscaling/v2", "policy/v1", "batch/v1", "networking.k8s.io/v1")
for pair in pairs:
    name, path = pair.split("=", 1)
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    keep = [d for d in docs if d.get("apiVersion") in builtin]
    for d in docs:
        if d not in keep:
            print(f"SKIP {name}: {d['kind']} ({d['apiVersion']}) is a custom resource; "
                  "kubernetes-validate bundles no schema for it")
    with open(path + ".builtin", "w") as f:
        yaml.safe_dump_all(keep, f)
# Control: an unknown field must be rejected, or --strict proves nothing.
base = [d for d in yaml.safe_load_all(open(pairs[0].split("=", 1)[1])) if d and d["kind"] == "Deployment"]
base[0]["spec"]["template"]["spec"]["containers"][0]["noSuchField"] = True
with open(os.path.join(work, "control.yaml"), "w") as f:
    yaml.safe_dump(base[0], f)
PY
)
for pair in "${rendered[@]}"; do
  name="${pair%%=*}"; path="${pair#*=}"
  if [[ ! -s "$path.builtin" ]] || [[ "$(head -c 4 "$path.builtin")" == "[]" ]]; then
    continue  # only custom resources (reported as SKIP above)
  fi
  kinds="$("$PY" -c 'import sys, yaml; print(", ".join(d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$path.builtin")"
  if out="$("$venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$path.builtin" 2>&1)"; then
    pass "kubernetes-validate --strict ($K8S_VERSION) $name: $kinds"
  else
    fail "kubernetes-validate --strict ($K8S_VERSION) $name" "$out"
  fi
done
if "$venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$work/control.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate --strict rejects an unknown field (control)"
else
  pass "kubernetes-validate --strict rejects an unknown field (control)"
fi

# ---------------------------------------------------------------- settings, probes, security
# Two different tokens, readable by their owner only (as a token file should be).
printf 'token-for-check-kubernetes\n' >"$work/token"
printf 'feedback-token-for-check-kubernetes\n' >"$work/feedback-token"
chmod 0600 "$work/token" "$work/feedback-token"
nb_config() { env -i PATH="/usr/bin:/bin" HOME="$work" "$@" "$BIN" config; }
rc=0; nb_config NBSERVE__SERVER__NO_SUCH_SETTING=1 >/dev/null 2>&1 || rc=$?
if [[ $rc -eq 3 ]]; then pass "nbserve config rejects an unknown key with exit 3 (control)"
else fail "nbserve config rejects an unknown key with exit 3 (control)" "exit $rc"; fi

for pair in "${rendered[@]}"; do
  name="${pair%%=*}"; path="${pair#*=}"
  # One line per serving container: name, then its NBSERVE__* environment.
  "$PY" - "$path" "$work/token" "$work/feedback-token" >"$work/containers.tsv" 2>"$work/extract.out" <<'PY'
import sys, yaml
path, token, feedback_token = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
for d in docs:
    if d["kind"] == "Deployment":
        pod = d["spec"]["template"]["spec"]
    elif d["kind"] == "InferenceService":
        pod = d["spec"]["predictor"]
    elif d["kind"] == "CronJob":
        pod = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        continue
    for c in pod["containers"]:
        env = {}
        for src in c.get("envFrom", []):
            env.update(maps.get(src.get("configMapRef", {}).get("name"), {}))
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
            secret = (e.get("valueFrom") or {}).get("secretKeyRef")
            if secret:
                # The Secret does not exist here: a stand-in of a valid length.
                env[e["name"]] = f"stand-in-{secret['name']}-{secret['key']}"
            elif ref:
                if ref["key"] not in maps.get(ref["name"], {}):
                    print(f"FAIL: {d['kind']}/{d['metadata']['name']}/{c['name']}: {e['name']} refers to a missing "
                          f"ConfigMap key {ref['name']}/{ref['key']}", file=sys.stderr)
                env[e["name"]] = maps.get(ref["name"], {}).get(ref["key"], "")
            else:
                env[e["name"]] = e.get("value", "")
        env = {k: v for k, v in env.items() if k.startswith("NBSERVE__")}
        if "NBSERVE__ADMIN__TOKEN_FILE" in env:
            env["NBSERVE__ADMIN__TOKEN_FILE"] = token
        if "NBSERVE__FEEDBACK__TOKEN_FILE" in env:
            env["NBSERVE__FEEDBACK__TOKEN_FILE"] = feedback_token
        print("\t".join([f"{d['kind']}/{d['metadata']['name']}/{c['name']}"] + [f"{k}={v}" for k, v in sorted(env.items())]))
PY
  tally <"$work/extract.out"
  : >"$work/configs.tsv"
  while IFS=$'\t' read -r -a fields; do
    what="${fields[0]}"; vars=("${fields[@]:1}")
    if [[ ${#vars[@]} -eq 0 ]]; then
      fail "$name $what: NBSERVE__* settings found" "none: the extraction is broken"
      continue
    fi
    if cfg="$(nb_config "${vars[@]}" 2>&1)"; then
      pass "$name $what: nbserve config accepts all ${#vars[@]} NBSERVE__* variables"
    else
      fail "$name $what: nbserve config accepts all ${#vars[@]} NBSERVE__* variables" "$cfg"
      continue
    fi
    printf '%s' "$cfg" >"$work/config.json"
    n_cfg=$(( ${n_cfg:-0} + 1 ))
    cp "$work/config.json" "$work/config-$n_cfg.json"
    printf '%s\t%s\n' "$what" "$work/config-$n_cfg.json" >>"$work/configs.tsv"
    tally < <("$PY" - "$path" "$name $what" "$work/config.json" <<'PY'

import json, sys, yaml
path, what, cfg = sys.argv[1:]
kind, obj, cname = what.split(" ")[-1].split("/")
settings = json.load(open(cfg))
server = settings["server"]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
d = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == obj)
pods = {"Deployment": lambda d: d["spec"]["template"]["spec"],
        "InferenceService": lambda d: d["spec"]["predictor"],
        "CronJob": lambda d: d["spec"]["jobTemplate"]["spec"]["template"]["spec"]}
pod = pods[kind](d)
c = next(c for c in pod["containers"] if c["name"] == cname)
ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}

def check(ok, text, detail=""):
    print(("PASS: " if ok else "FAIL: ") + f"{what}: {text}")
    if not ok and detail:
        print("      " + detail)

def hardened(pod, c, who=""):
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True, f"{who}runAsNonRoot")
    check(sc.get("readOnlyRootFilesystem") is True, f"{who}readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"{who}allowPrivilegeEscalation: false")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{who}capabilities drop ALL")
    check((sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
          f"{who}seccomp RuntimeDefault")
    res = c.get("resources", {})
    check(all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
          f"{who}cpu and memory requests and limits")

def mount_of(pod, c, file_path):
    # (claimName, readOnly) of the PVC mount holding file_path in container c
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if file_path.startswith(mp + "/") and (best is None or len(mp) > len(best[0])):
            best = (mp, m)
    if best is None:
        return None
    vol = next((v for v in pod.get("volumes", []) if v["name"] == best[1]["name"]), {})
    pvc = vol.get("persistentVolumeClaim")
    if pvc is None:
        return None
    return pvc["claimName"], bool(best[1].get("readOnly") or pvc.get("readOnly"))

if kind == "CronJob":
    # The retrain job: hardened like the server, one at a time, never
    # restarted in place, and writing the very model file the replicas serve.
    js = d["spec"]["jobTemplate"]["spec"]
    check(d["spec"].get("concurrencyPolicy") == "Forbid", "concurrencyPolicy Forbid")
    check(pod.get("restartPolicy") in ("Never", "OnFailure"), f"restartPolicy {pod.get('restartPolicy')}")
    rules = (js.get("podFailurePolicy") or {}).get("rules", [])
    fail_on = {v for r in rules if r.get("action") == "FailJob" for v in (r.get("onExitCodes") or {}).get("values", [])}
    check(5 in fail_on, f"a gate's rejection (exit 5) fails the Job at once, not retried (FailJob on {sorted(fail_on)})")
    check(c.get("args", [])[:1] == ["retrain"], f"runs `nbserve retrain` (args {c.get('args', [])[:1]})")
    hardened(pod, c)
    for ic in pod.get("initContainers", []):
        hardened(pod, ic, f"init container {ic['name']}: ")
    model_path = settings["model"]["path"]
    job_mount = mount_of(pod, c, model_path)
    serving = []
    for dep in (x for x in docs if x["kind"] == "Deployment"):
        dpod = dep["spec"]["template"]["spec"]
        for dc in dpod["containers"]:
            serving.append((dep["metadata"]["name"], mount_of(dpod, dc, model_path)))
    check(job_mount is not None and not job_mount[1],
          f"model.path {model_path} is on a writable PVC mount ({job_mount})")
    check(bool(serving) and all(m is not None and job_mount is not None and m[0] == job_mount[0] for _, m in serving),
          f"the replicas serve model.path from the same PVC ({serving})")
    sys.exit(0)

check(server["port"] in ports.values(), f"container port is server.port {server['port']}", f"ports {ports}")
paths = {"livenessProbe": {"/health", "/v2/health/live"},
         "readinessProbe": {"/ready", "/v2/health/ready"},
         "startupProbe": {"/health", "/ready", "/v2/health/live", "/v2/health/ready"}}
for probe, allowed in paths.items():
    p = c.get(probe)
    if p is None:
        check(False, f"{probe} present")
        continue
    get = p.get("httpGet", {})
    port = get.get("port")
    port = ports.get(port, port) if isinstance(port, str) else port
    check(get.get("path") in allowed and port == server["port"],
          f"{probe} GET {get.get('path')} on port {port}",
          f"expected one of {sorted(allowed)} on {server['port']}")
grace = pod.get("terminationGracePeriodSeconds", 30)
need = server["drain_delay_secs"] + server["shutdown_timeout_secs"]
check(grace > need, f"terminationGracePeriodSeconds {grace} > drain_delay_secs + shutdown_timeout_secs = {need}")
hardened(pod, c)
if kind == "Deployment":
    check(bool(pod.get("topologySpreadConstraints")), "topologySpreadConstraints")
for ic in pod.get("initContainers", []):
    hardened(pod, ic, f"init container {ic['name']}: ")
PY
)
  done <"$work/containers.tsv"
  tally < <("$PY" scripts/lib/check_kubernetes.py "$path" "$name" "$work/configs.tsv" "$root" 2>&1)
done

if grep -q '^NBSERVE__SERVER__DRAIN_DELAY_SECS=[1-9]' deploy/kubernetes/base/nbserve.env; then
  pass "base sets server.drain_delay_secs > 0 (endpoints removed before the listener closes)"
else
  fail "base sets server.drain_delay_secs > 0 (endpoints removed before the listener closes)"
fi

printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[[ $FAILED -eq 0 ]]
