#!/usr/bin/env bash
# Offline checks of the container and CI/CD files (tests/deploy/, pytest; part
# of scripts/test.sh). No Docker engine is needed:
#   - `docker compose config` with the real Compose v2 binary (warnings fail too)
#   - JSON schemas: compose spec, GitHub workflows, dependabot
#   - hadolint (Dockerfile), actionlint (+ shellcheck on run: blocks), zizmor,
#     and ShellCheck on every script
#   - every NBSERVE__* variable set in docker-compose.yml, the Dockerfile and the
#     workflows is a setting the server accepts (`env NAME=value nbserve config`
#     exits 0; 3 means unknown key or invalid value)
#   - ports and model paths in Dockerfile / compose / CI agree with `nbserve config` defaults
#   - compose bind mounts and the files they are expected to contain exist
#     (all profiles); the retrain service writes the ./models nbserve serves
#     from and reads the feedback log nbserve writes (same volume and path)
#     (prometheus.yml rule files + scrape target, Grafana provisioning + home dashboard)
#   - the build context keeps what cargo and the image need (.dockerignore)
#   - the binary needs no shared library the distroless cc-debian12 runtime lacks
#
#   scripts/check-deploy.sh                 # builds the debug nbserve if needed
#   NBSERVE_BIN=path/to/nbserve scripts/check-deploy.sh
#
# The linters come from scripts/install-tools.sh. Prints `check-deploy: N
# passed, M failed` (from pytest's JUnit XML); pytest arguments pass through.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
NBSERVE_TOOLS_BIN="$(scripts/install-tools.sh | tail -n 1)"
export NBSERVE_TOOLS_BIN
pytest_suite check-deploy "$(pytest_venv)" tests/deploy "$@"
