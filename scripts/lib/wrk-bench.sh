# shellcheck shell=bash
# Sourced (not run) by the wrappers of the Python benchmarks that drive wrk
# (bench/learn_load.sh, bench/trace_load.sh):
#
#   source scripts/lib/wrk-bench.sh
#   wrk_bench NAME bench/NAME.py "$@"
#
# Fetches the corpus, takes the release nbserve from NBSERVE_BIN (else builds
# it), checks wrk is on PATH, then runs the Python bench with `--bin` and the
# remaining arguments in place of the shell.
wrk_bench() {
    local name="$1" script="$2"
    shift 2
    scripts/fetch-data.sh >&2
    if [[ -z "${NBSERVE_BIN:-}" ]]; then
        cargo build --locked --release --quiet --bin nbserve
        # shellcheck source=scripts/lib/cargo.sh
        source scripts/lib/cargo.sh
        NBSERVE_BIN="$(cargo_bin release nbserve)"
    fi
    command -v wrk >/dev/null || {
        echo "$name: wrk is not on PATH (bench/load.sh fetches Debian's; apt-get install wrk works too)" >&2
        exit 1
    }
    exec python3 "$script" --bin "$NBSERVE_BIN" "$@"
}
