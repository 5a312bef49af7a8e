#!/usr/bin/env bash
# Offline checks of the container and CI/CD files (part of scripts/test.sh).
#
#   scripts/check-deploy.sh                 # builds the debug nbserve if needed
#   NBSERVE_BIN=path/to/nbserve scripts/check-deploy.sh
#
# No Docker engine is needed. Checks:
#   - `docker compose config` with the real Compose v2 binary (warnings fail too)
#   - JSON schemas: compose spec, GitHub workflows, dependabot
#   - hadolint (Dockerfile), actionlint (+ shellcheck on run: blocks), zizmor, shellcheck on these scripts
#   - every NBSERVE__* variable set in docker-compose.yml, the Dockerfile and the
#     workflows is a setting the server accepts (`env NAME=value nbserve config`
#     exits 0; 3 means unknown key or invalid value)
#   - ports and model paths in Dockerfile / compose / CI agree with `nbserve config` defaults
#   - compose bind mounts and the files they are expected to contain exist
#     (all profiles); the retrain service writes the ./models nbserve serves
#     from and reads the feedback log nbserve writes (same volume and path)
#     (prometheus.yml rule files + scrape target, Grafana provisioning + home dashboard)
#   - the binary needs no shared library the distroless cc-debian12 runtime lacks
# One PASS/FAIL line per check; exits non-zero if any check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PASSED=0
FAILED=0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

pass() { PASSED=$((PASSED + 1)); printf 'PASS: %s\n' "$1"; }
fail() {
  FAILED=$((FAILED + 1)); printf 'FAIL: %s\n' "$1"
  if [[ $# -gt 1 && -n "$2" ]]; then printf '%s\n' "$2" | sed 's/^/      /'; fi
}
# run_check NAME CMD...: PASS if CMD exits 0, else FAIL with its output.
run_check() {
  local name="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$name"; else fail "$name" "$out"; fi
}
# Python lines "PASS: ..." / "FAIL: ..." (+ indented detail) -> counters.
tally() {
  local line
  while IFS= read -r line; do
    case "$line" in
      PASS:*) PASSED=$((PASSED + 1)); printf '%s\n' "$line" ;;
      FAIL:*) FAILED=$((FAILED + 1)); printf '%s\n' "$line" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}

# ---------------------------------------------------------------- tools
TOOLS_BIN="$(scripts/install-tools.sh | tail -n 1)"
COMPOSE="$TOOLS_BIN/compose-v2"
TOOLS_PY="$TOOLS_BIN/python"
export PATH="$TOOLS_BIN:$PATH"   # actionlint finds shellcheck here

WORKFLOWS=()
for f in .github/workflows/*.yml .github/workflows/*.yaml; do
  [[ -f "$f" ]] && WORKFLOWS+=("$f")
done

# ---------------------------------------------------------------- static checks
compose_config() {
  # Resolved JSON for the consistency checks below; any warning (e.g. an unset
  # variable without a default) is a failure.
  # --profile '*': the optional services (mlflow, retrain) are checked too.
  "$COMPOSE" -f docker-compose.yml --profile '*' config --format json >"$WORK/compose.json" 2>"$WORK/compose.err" \
    || { cat "$WORK/compose.err"; return 1; }
  if grep -qi 'warn' "$WORK/compose.err"; then cat "$WORK/compose.err"; return 1; fi
}
if compose_config_out="$(compose_config 2>&1)"; then
  pass "docker compose config (Compose $("$COMPOSE" version --short))"
  HAVE_COMPOSE_JSON=1
else
  fail "docker compose config" "$compose_config_out"
  HAVE_COMPOSE_JSON=0
fi

run_check "compose file matches the compose-spec schema" \
  check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
if [[ ${#WORKFLOWS[@]} -gt 0 ]]; then
  run_check "workflows match the GitHub workflow schema (${WORKFLOWS[*]})" \
    check-jsonschema --builtin-schema vendor.github-workflows "${WORKFLOWS[@]}"
  run_check "actionlint (with shellcheck on run: blocks)" actionlint "${WORKFLOWS[@]}"
  # Template injection, over-broad permissions, unpinned actions, credential
  # persistence, cache poisoning in release workflows, ...
  run_check "zizmor (GitHub Actions security, offline)" zizmor --offline --no-progress "${WORKFLOWS[@]}"
else
  fail "workflows present" "no .github/workflows/*.yml"
fi
run_check "dependabot.yml matches the dependabot schema" \
  check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
run_check "hadolint Dockerfile" hadolint Dockerfile
# -x: follow `source`d helpers (scripts/lib/), checked as part of each caller.
run_check "shellcheck every script (scripts/, scripts/lib/, bench/, .ci/run)" \
  shellcheck -x scripts/*.sh scripts/lib/*.sh bench/*.sh .ci/run

# ---------------------------------------------------------------- binary
if [[ -n "${NBSERVE_BIN:-}" ]]; then
  BIN="$NBSERVE_BIN"
else
  # shellcheck source=scripts/lib/cargo.sh
  source scripts/lib/cargo.sh
  BIN="$(cargo_bin debug nbserve)"
  # No-op when up to date; cargo waits by itself if another build holds the lock.
  if ! build_out="$(cargo build --quiet --bin nbserve 2>&1)"; then
    fail "cargo build --bin nbserve" "$build_out"
  fi
fi

# A clean environment, so NBSERVE__* variables of the caller don't leak in.
nb_config() { env -i PATH="/usr/bin:/bin" HOME="$WORK" "$@" "$BIN" config; }

if [[ ! -x "$BIN" ]]; then
  fail "nbserve binary at $BIN" "missing: the settings checks below cannot run"
else
  # --- `nbserve config` itself (docs/reference/settings.md)
  if nb_config >"$WORK/config.json" 2>"$WORK/config.err" \
     && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$WORK/config.json" 2>/dev/null; then
    pass "nbserve config prints the resolved settings as JSON"
    HAVE_CONFIG=1
  else
    fail "nbserve config prints the resolved settings as JSON" \
      "$(cat "$WORK/config.json" "$WORK/config.err" 2>/dev/null | head -20)"
    HAVE_CONFIG=0
  fi
  # Controls: without these the variable check below would prove nothing.
  rc=0; nb_config NBSERVE__SERVER__NO_SUCH_SETTING=1 >/dev/null 2>&1 || rc=$?
  if [[ $rc -eq 3 ]]; then pass "nbserve config rejects an unknown key with exit 3"
  else fail "nbserve config rejects an unknown key with exit 3" "NBSERVE__SERVER__NO_SUCH_SETTING=1 -> exit $rc"; fi
  rc=0; nb_config NBSERVE__SERVER__PORT=not-a-port >/dev/null 2>&1 || rc=$?
  if [[ $rc -eq 3 ]]; then pass "nbserve config rejects an invalid value with exit 3"
  else fail "nbserve config rejects an invalid value with exit 3" "NBSERVE__SERVER__PORT=not-a-port -> exit $rc"; fi

  # --- every NBSERVE__* variable the deployment files set
  rc=0
  python3 - "$WORK/compose.json" "$HAVE_COMPOSE_JSON" Dockerfile "${WORKFLOWS[@]}" \
    >"$WORK/vars.tsv" 2>"$WORK/vars.err" <<'PY' || rc=$?
import json, re, sys

compose_json, have_compose, dockerfile, *workflows = sys.argv[1:]
found = {}  # (name, value) -> [sources]
ignored = {}  # NBSERVE_X (one underscore) handed to the container: the server never reads it

def plausible(name):
    n = name.upper()
    table = [
        ("HOST", "0.0.0.0"), ("PORT", "8080"), ("MIN_F1_MACRO", "0.9"),
        ("LOG__FORMAT", "json"), ("LOG__LEVEL", "info"), ("TOKEN", "example-admin-token"),
        ("MODEL__PATH", "models/spam-nb.json"), ("MODEL__DIR", "models"),
        ("HOLDOUT_PATH", "tests/data/sample.csv"), ("LOG_PATH", "/tmp/feedback.jsonl"),
    ]
    for suffix, value in table:
        if n.endswith(suffix):
            return value
    return "1000"  # the remaining settings are positive integers

def add(name, value, source):
    # Unresolved values (${...}, ${{ ... }}, pass-through) get a plausible one.
    if value is None or value == "" or "$" in value:
        value = plausible(name)
    found.setdefault((name, value), []).append(source)

if have_compose == "1":
    services = json.load(open(compose_json)).get("services", {})
    for svc_name, svc in services.items():
        for k, v in (svc.get("environment") or {}).items():
            if k.startswith("NBSERVE__"):
                add(k, v, f"docker-compose.yml:{svc_name}")
            elif k.startswith("NBSERVE_"):
                ignored.setdefault(k, []).append(f"docker-compose.yml:{svc_name}")

text = open(dockerfile).read().replace("\\\n", " ")
for line in text.splitlines():
    if re.match(r"\s*(ENV|ARG)\s", line, re.I):
        for m in re.finditer(r"(NBSERVE__[A-Z0-9_]+)(?:=|\s+)(\"[^\"]*\"|\S+)?", line):
            add(m.group(1), (m.group(2) or "").strip('"'), "Dockerfile")
    if re.match(r"\s*ENV\s", line, re.I):
        for m in re.finditer(r"\b(NBSERVE_[A-Z0-9][A-Z0-9_]*)", line):
            ignored.setdefault(m.group(1), []).append("Dockerfile")

for wf in workflows:
    for m in re.finditer(r"(NBSERVE__[A-Z0-9_]+)\s*(?:=|:[ \t]*)([^\s\"']*)", open(wf).read()):
        add(m.group(1), m.group(2), wf)
    # `docker run -e NBSERVE_X=...`: reaches the container but not the settings.
    for m in re.finditer(r"(?:-e|--env)[ =]\"?(NBSERVE_[A-Z0-9][A-Z0-9_]*)", open(wf).read()):
        ignored.setdefault(m.group(1), []).append(wf)

for (name, value), sources in sorted(found.items()):
    print(f"{name}\t{value}\t{', '.join(sorted(set(sources)))}")
for name, sources in sorted(ignored.items()):
    print(f"{name}\t-\t{', '.join(sorted(set(sources)))}\tignored")
PY
  if [[ $rc -ne 0 ]]; then
    fail "extract NBSERVE__* variables from the deployment files" "$(cat "$WORK/vars.err")"
  elif [[ ! -s "$WORK/vars.tsv" ]]; then
    fail "NBSERVE__* variables found in the deployment files" "none found: the extraction is broken"
  fi
  while IFS=$'\t' read -r name value sources kind; do
    if [[ "${kind:-}" == ignored ]]; then
      fail "$name is passed to the container but is not a setting: NBSERVE__ takes two underscores ($sources)"
      continue
    fi
    rc=0; err="$(nb_config "$name=$value" 2>&1 >/dev/null)" || rc=$?
    case $rc in
      0) pass "setting $name=$value is known ($sources)" ;;
      3) fail "setting $name=$value is unknown or invalid ($sources)" "$err" ;;
      *) fail "setting $name=$value: nbserve config exited $rc ($sources)" "$err" ;;
    esac
  done <"$WORK/vars.tsv"

  # --- the binary's shared libraries exist in gcr.io/distroless/cc-debian12
  if ! command -v readelf >/dev/null; then
    fail "readelf is available for the shared-library check" \
      "readelf not found: install binutils (apt-get install binutils); the check cannot be skipped"
  elif ! readelf -h "$BIN" >/dev/null 2>&1; then
    fail "binary is an ELF executable" "$BIN"
  else
    needed="$(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u)"
    missing=""
    for lib in $needed; do
      case "$lib" in
        libc.so.6|libm.so.6|libgcc_s.so.1|libstdc++.so.6|ld-linux-x86-64.so.2|ld-linux-aarch64.so.1|\
        libpthread.so.0|libdl.so.2|librt.so.1|libutil.so.1|libresolv.so.2) ;;
        *) missing+="$lib " ;;
      esac
    done
    if [[ -z "$missing" ]]; then
      pass "binary needs only libraries distroless cc-debian12 has ($(echo "$needed" | tr '\n' ' '))"
    else
      fail "binary needs only libraries distroless cc-debian12 has" "not in the runtime image: $missing"
    fi
    glibc_max="$(readelf -V "$BIN" | grep -o 'GLIBC_[0-9.]*' | sort -V -u | tail -n 1 || true)"
    echo "INFO: highest glibc symbol version needed: ${glibc_max:-none} (bookworm/distroless has 2.36; the image is built on bookworm)"
  fi
fi

# ---------------------------------------------------------------- consistency
if [[ "${HAVE_CONFIG:-0}" == 1 && "$HAVE_COMPOSE_JSON" == 1 ]]; then
  # YAML (prometheus.yml, Grafana provisioning) needs ruamel.yaml: the tools venv
  # has it as a check-jsonschema dependency. The settings JSON is plain stdlib.
  rc=0
  "$TOOLS_PY" - "$WORK/config.json" "$WORK/compose.json" Dockerfile "${WORKFLOWS[@]}" \
    >"$WORK/consistency.out" 2>&1 <<'PY' || rc=$?
import glob, json, os, posixpath, re, sys
from urllib.parse import urlparse
from ruamel.yaml import YAML

config_json, compose_json, dockerfile, *workflows = sys.argv[1:]
cfg = json.load(open(config_json))
compose = json.load(open(compose_json))
yaml = YAML(typ="safe")

def check(name, ok, detail=""):
    print(f"PASS: {name}" if ok else f"FAIL: {name}")
    if not ok and detail:
        print(f"      {detail}")

def setting(dotted):
    if dotted in cfg:
        return cfg[dotted]
    d = cfg
    for part in dotted.split("."):
        d = d[part]
    return d

port = int(setting("server.port"))
model_path = str(setting("model.path"))
model_dir = str(setting("model.dir"))
print(f"INFO: nbserve config defaults: server.port={port} model.path={model_path} model.dir={model_dir}")

# ---- Dockerfile (final stage)
lines = []
for raw in open(dockerfile).read().replace("\\\n", " ").splitlines():
    s = raw.strip()
    if s and not s.startswith("#"):
        lines.append(s)
last_from = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
final = lines[last_from:]
def instr(name):
    return [l.split(None, 1)[1] if " " in l else "" for l in final if l.split(None, 1)[0].upper() == name]

exposed = [int(p.split("/")[0]) for e in instr("EXPOSE") for p in e.split()]
check(f"Dockerfile EXPOSE {exposed} includes server.port {port}", port in exposed)

hc = instr("HEALTHCHECK")
hc_ports = []
for h in hc:
    for url in re.findall(r"https?://[^\s\"',\]]+", h):
        u = urlparse(url)
        hc_ports.append(u.port or 80)
check(f"Dockerfile HEALTHCHECK URL port {hc_ports} is server.port {port}", bool(hc_ports) and set(hc_ports) == {port},
      "no HEALTHCHECK with a URL" if not hc_ports else "")

workdir = (instr("WORKDIR") or ["/"])[-1]
image_model = posixpath.normpath(posixpath.join(workdir, model_path))
image_model_dir = posixpath.normpath(posixpath.join(workdir, model_dir))
check(f"model.path {model_path} lies inside model.dir {model_dir}",
      posixpath.normpath(model_path).startswith(posixpath.normpath(model_dir) + "/"))
copies_models = re.search(r"(^|\s)\.?/?models/?\s+\S*" + re.escape(image_model_dir) + r"/?(\s|$)",
                          "\n".join(lines), re.M)
check(f"Dockerfile puts the repo's models/ at {image_model_dir} (WORKDIR {workdir} + model.dir)", bool(copies_models))
check(f"default model {model_path} exists in the repo (-> {image_model} in the image)", os.path.isfile(model_path),
      "the image build copies models/; train or restore the artifact")
envs = dict(re.findall(r"(NBSERVE__[A-Z0-9_]+)=(\S+)", " ".join(instr("ENV"))))
check("Dockerfile sets NBSERVE__SERVER__HOST=0.0.0.0 (reachable from outside the container)",
      envs.get("NBSERVE__SERVER__HOST") == "0.0.0.0", f"ENV has {envs}")
labels = " ".join(instr("LABEL"))
missing = [k for k in ("source", "version", "revision") if f"org.opencontainers.image.{k}=" not in labels]
check("Dockerfile final stage has OCI labels source, version, revision", not missing, f"missing {missing}")
user = (instr("USER") or ["0"])[-1].split(":")[0]
check(f"Dockerfile runs as a non-root user ({user})", user not in ("0", "root"))

# ---- compose
services = compose["services"]
def binds(svc):
    out = []
    for v in svc.get("volumes") or []:
        if v.get("type") == "bind":
            out.append((v["source"], v["target"]))
    return out
def to_host(svc, cpath):
    for src, tgt in sorted(binds(svc), key=lambda b: -len(b[1])):
        if cpath == tgt:
            return src
        if cpath.startswith(tgt.rstrip("/") + "/"):
            return os.path.join(src, cpath[len(tgt.rstrip("/")) + 1:])
    return None

for name, svc in services.items():
    for src, tgt in binds(svc):
        check(f"compose {name}: bind source {os.path.relpath(src)} exists (-> {tgt})", os.path.exists(src))

nb = services.get("nbserve", {})
env = nb.get("environment") or {}
nb_port = int(env.get("NBSERVE__SERVER__PORT") or port)
check(f"compose nbserve: NBSERVE__SERVER__PORT {nb_port} equals server.port default {port}", nb_port == port)
targets = [int(p["target"]) for p in nb.get("ports") or []]
check(f"compose nbserve: published container port {targets} is {nb_port}", nb_port in targets)
test = " ".join(nb.get("healthcheck", {}).get("test") or [])
hc_urls = re.findall(r"https?://\S+", test)
check(f"compose nbserve: healthcheck uses `nbserve healthcheck` on port {nb_port}",
      "healthcheck" in test and bool(hc_urls) and all((urlparse(u).port or 80) == nb_port for u in hc_urls), test)
nb_model = posixpath.join(workdir, env.get("NBSERVE__MODEL__PATH") or model_path)
host_model = to_host(nb, nb_model)
check(f"compose nbserve: model {nb_model} comes from a bind mount of ./models",
      host_model is not None and os.path.normpath(host_model) == os.path.abspath(model_path), f"maps to {host_model}")
check("compose nbserve: read_only root filesystem", nb.get("read_only") is True)

# retrain (profile): writes the model nbserve serves, reads the log nbserve writes
rt = services.get("retrain")
if rt is None:
    check("compose has a retrain service (profile retrain)", False)
else:
    renv = rt.get("environment") or {}
    def mount_of(svc, cpath):
        # (kind, source, container path below the mount) of the mount holding cpath
        best = None
        for v in svc.get("volumes") or []:
            tgt = v["target"].rstrip("/")
            if cpath == tgt or cpath.startswith(tgt + "/"):
                if best is None or len(tgt) > len(best[3]):
                    best = (v.get("type"), v.get("source"), cpath[len(tgt):].lstrip("/"), tgt, v.get("read_only", False))
        return best
    rt_model = posixpath.join(workdir, renv.get("NBSERVE__MODEL__PATH") or model_path)
    check(f"compose retrain: model.path {rt_model} is nbserve's ({nb_model})", rt_model == nb_model)
    m_rt, m_nb = mount_of(rt, rt_model), mount_of(nb, nb_model)
    check("compose retrain: writes the same ./models mount nbserve reads, and may write it",
          bool(m_rt and m_nb) and m_rt[:3] == m_nb[:3] and not m_rt[4], f"retrain {m_rt}, nbserve {m_nb}")
    cmd = rt.get("command") or []
    logs = [a.split("=", 1)[1] for a in cmd if a.startswith("--feedback-log=")]
    nb_log = env.get("NBSERVE__FEEDBACK__LOG_PATH")
    l_nb = mount_of(nb, posixpath.join(workdir, nb_log)) if nb_log else None
    l_rt = [mount_of(rt, posixpath.join(workdir, l)) for l in logs]
    check(f"compose retrain: reads the feedback log nbserve writes ({logs} vs {nb_log})",
          bool(l_nb) and l_nb[0] == "volume" and any(l and l[:3] == l_nb[:3] for l in l_rt),
          f"retrain {l_rt}, nbserve {l_nb}")
    check("compose retrain: read_only root filesystem", rt.get("read_only") is True)
    check("compose retrain: command is `retrain` with --data and --holdout",
          cmd[:1] == ["retrain"] and any(a.startswith("--data") for a in cmd) and any(a.startswith("--holdout") for a in cmd),
          " ".join(cmd))

# prometheus
prom = services.get("prometheus", {})
cmd = " ".join(prom.get("command") or [])
m = re.search(r"--config\.file=(\S+)", cmd)
prom_cfg_c = m.group(1) if m else "/etc/prometheus/prometheus.yml"
prom_cfg_h = to_host(prom, prom_cfg_c)
if prom_cfg_h and os.path.isfile(prom_cfg_h):
    pcfg = yaml.load(open(prom_cfg_h)) or {}
    base_c = posixpath.dirname(prom_cfg_c)
    for rf in pcfg.get("rule_files") or []:
        rc = posixpath.join(base_c, rf)
        rh = to_host(prom, rc)
        ok = bool(rh) and bool(glob.glob(rh))
        check(f"prometheus rule_files {rf} -> {rc} is mounted from {os.path.relpath(rh) if rh else '?'}", ok)
    want = f"nbserve:{nb_port}"
    jobs = [j.get("job_name") for j in pcfg.get("scrape_configs") or []
            if any(want in (sc.get("targets") or []) for sc in j.get("static_configs") or [])]
    check(f"prometheus scrapes {want} (jobs {jobs})", bool(jobs))
else:
    check(f"prometheus config {prom_cfg_c} is mounted from an existing file", False, f"host path {prom_cfg_h}")

# grafana
gf = services.get("grafana", {})
genv = gf.get("environment") or {}
home_c = genv.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
home_h = to_host(gf, home_c) if home_c else None
home_ok = False
if home_h and os.path.isfile(home_h):
    try:
        home_ok = bool(json.load(open(home_h)).get("title"))
    except ValueError:
        pass
check(f"grafana home dashboard {home_c} is a mounted dashboard JSON ({os.path.relpath(home_h) if home_h else '?'})", home_ok)
prov_h = to_host(gf, "/etc/grafana/provisioning")
if prov_h and os.path.isdir(prov_h):
    providers = []
    for f in sorted(glob.glob(os.path.join(prov_h, "dashboards", "*.y*ml"))):
        for p in (yaml.load(open(f)) or {}).get("providers") or []:
            providers.append((os.path.relpath(f), (p.get("options") or {}).get("path")))
    check(f"grafana dashboard providers found {providers}", bool(providers))
    for f, path in providers:
        h = to_host(gf, path) if path else None
        ok = bool(h) and os.path.isdir(h) and bool(glob.glob(os.path.join(h, "**", "*.json"), recursive=True))
        check(f"grafana provider {f} path {path} is a mounted dir with dashboards", ok, f"maps to {h}")
    if home_c and providers:
        check("grafana home dashboard lies under a provisioned dashboards path",
              any(p and home_c.startswith(p.rstrip("/") + "/") for _, p in providers))
    urls = []
    for f in sorted(glob.glob(os.path.join(prov_h, "datasources", "*.y*ml"))):
        for d in (yaml.load(open(f)) or {}).get("datasources") or []:
            if d.get("type") == "prometheus":
                urls.append(d.get("url"))
    check(f"grafana Prometheus datasource points at the compose service (http://prometheus:9090): {urls}",
          any(u and urlparse(u).hostname == "prometheus" and (urlparse(u).port or 80) == 9090 for u in urls))
else:
    check("grafana provisioning is mounted from an existing directory", False, f"host path {prov_h}")

# ---- workflows: the model the gate runs on
models_in_ci = set()
for wf in workflows:
    models_in_ci.update(re.findall(r"--model\s+(\S+)", open(wf).read()))
check(f"workflows run the gate on the default model ({sorted(models_in_ci)} == {model_path})",
      bool(models_in_ci) and models_in_ci == {model_path})
PY
  tally <"$WORK/consistency.out"
  if [[ $rc -ne 0 ]]; then fail "consistency checker ran to the end" "exit $rc (see the traceback above)"; fi
else
  fail "consistency checks with nbserve config defaults" "skipped: needs both \`nbserve config\` JSON and \`docker compose config\`"
fi

# ---------------------------------------------------------------- build context
# Everything cargo needs (manifest, lock file, every declared target: cargo
# refuses to build if one is missing) and the default model must survive
# .dockerignore, or the image build fails only on a machine with Docker.
if cargo metadata --no-deps --format-version 1 --offline >"$WORK/metadata.json" 2>"$WORK/metadata.err"; then
  model_default="models/spam-nb.json"
  if [[ "${HAVE_CONFIG:-0}" == 1 ]]; then
    model_default="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["path"])' "$WORK/config.json")"
  fi
  { git ls-files -co --exclude-standard 2>/dev/null || find . -type f -not -path './.git/*' -not -path './target/*' | sed 's|^\./||'; } >"$WORK/files.txt"
  rc=0
  python3 - "$WORK/metadata.json" "$WORK/files.txt" "$model_default" >"$WORK/context.out" 2>&1 <<'PY' || rc=$?
import json, os, re, sys

metadata, files_txt, model_path = sys.argv[1:]
root = os.getcwd()

def to_regex(pattern):
    # Docker's .dockerignore: root-anchored, `*` and `?` stay within one path
    # element, `**` spans any number of them; a match on a directory
    # excludes everything under it.
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
        elif pattern[i] == "*":
            out += "[^/]*"; i += 1
        elif pattern[i] == "?":
            out += "[^/]"; i += 1
        else:
            out += re.escape(pattern[i]); i += 1
    return re.compile(out + "(/.*)?$")

rules = []
for line in open(".dockerignore"):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    neg = line.startswith("!")
    pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
    rules.append((neg, to_regex(pat), line))

def excluded(path):
    verdict, why = False, ""
    for neg, rx, line in rules:
        if rx.match(path):
            verdict, why = (not neg), line
    return verdict, why

required = {"Cargo.toml", "Cargo.lock", os.path.normpath(model_path)}
for pkg in json.load(open(metadata))["packages"]:
    for t in pkg["targets"]:
        required.add(os.path.relpath(t["src_path"], root))
files = {l.strip() for l in open(files_txt) if l.strip()}
for path in sorted(required):
    ex, why = excluded(path)
    present = path in files or os.path.exists(path)
    ok = present and not ex
    detail = f"excluded by .dockerignore line '{why}'" if ex else ("not in the repo" if not present else "")
    print(("PASS" if ok else "FAIL") + f": build context keeps {path}")
    if not ok:
        print(f"      {detail}")
kept = [f for f in files if not excluded(f)[0]]
size = sum(os.path.getsize(f) for f in kept if os.path.isfile(f))
print(f"INFO: build context ~{len(kept)} files, {size / 1e6:.1f} MB (git-visible files after .dockerignore)")
PY
  tally <"$WORK/context.out"
  if [[ $rc -ne 0 ]]; then fail "build-context checker ran to the end" "exit $rc (see above)"; fi
else
  fail "cargo metadata (for the build-context check)" "$(cat "$WORK/metadata.err")"
fi

echo "check-deploy: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
