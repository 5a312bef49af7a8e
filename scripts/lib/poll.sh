# shellcheck shell=bash
# Sourced (not run): the two waiting helpers the test scripts share.
#
#   source scripts/lib/poll.sh
#   port="$(free_port)"
#   wait_for 60 "Prometheus ready" curl -fsS "$prom/-/ready"

# Prints a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS WHAT COMMAND...: polls every 0.2 s until COMMAND succeeds;
# after SECONDS says what it was waiting for and returns 1.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "timed out after ${timeout}s waiting for $what" >&2
            return 1
        fi
        sleep 0.2
    done
}
