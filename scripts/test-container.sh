#!/usr/bin/env bash
# The container image and the compose stack, built and run here
# (tests/container/): the image scripts/build-image.sh builds from the
# Dockerfile (no registry pull), run with podman as users run it; its SBOM and
# the release workflow's supply chain; docker-compose.yml up with podman-compose
# (+ docker-compose.offline.yml: Prometheus and Alertmanager from Debian's
# packages); the Kubernetes pod's model seeding with the same image.
#
#   scripts/test-container.sh [pytest args]
#   NBSERVE_BIN_RELEASE=path/to/nbserve scripts/test-container.sh   # the release binary to ship
#   NBSERVE_IMAGE=localhost/nbserve:X scripts/test-container.sh     # an image built already
#
# As root, podman (runc, buildah, skopeo, CNI DNS) is installed with apt-get
# when missing. Without root or podman every test is skipped, loudly, and
# counted as skipped. Prints `container: N passed, M failed` (JUnit XML).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
# shellcheck source=scripts/lib/podman.sh
source scripts/lib/podman.sh
# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh

loud() { printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! %s\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' "$*" >&2; }
py="$(pytest_venv)"
if [[ "$(id -u)" -ne 0 ]]; then
    loud "test-container: not root: the container tests will be SKIPPED"
elif ! install_podman; then
    loud "test-container: podman could not be installed: the container tests will be SKIPPED"
fi
compose_venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv podman-compose scripts/podman-compose-requirements.txt)"
export NBSERVE_PODMAN_COMPOSE="$compose_venv/bin/podman-compose"
export_release_nbserve
pytest_suite container "$py" tests/container "$@"
