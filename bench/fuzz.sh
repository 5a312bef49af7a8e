#!/usr/bin/env bash
# Coverage-guided fuzzing of nbserve with cargo fuzz (libFuzzer + AddressSanitizer,
# optimised, debug assertions and overflow checks on): each target in fuzz/ runs
# FUZZ_SECONDS (300) on the stable toolchain (RUSTC_BOOTSTRAP=1 lets it take
# cargo fuzz's -Z flags; no nightly needed). Not part of scripts/test.sh, whose
# smoke run is tests/fuzz_corpus.rs: the committed corpora replayed through the
# same target functions under plain `cargo test`.
#
#   bench/fuzz.sh                          # all targets, 5 minutes each
#   FUZZ_SECONDS=60 bench/fuzz.sh tokenizer
#
# Targets (fuzz/src/lib.rs): artifact (loader and gate on arbitrary bytes),
# requests (the real router in-process: status < 500, JSON error shape),
# tokenizer (equal to a regex-crate scanner for `(?u)\b\w\w+\b`).
#
# artifact and requests use the dictionaries in fuzz/dicts/ (JSON keys and
# edge values). New inputs go to a scratch corpus (the committed seeds in fuzz/corpus/ stay
# as they are); a crash leaves its input in fuzz/artifacts/<target>/ (to add to
# fuzz/corpus/<target>/ once fixed, so tests/fuzz_corpus.rs replays it). Prints
# one line per target (seconds, executions, execs/s, coverage, corpus, crashes)
# and `N passed, M failed`, a target passing when it ran its time without a
# crash, leak, timeout or out-of-memory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
FUZZ_SECONDS="${FUZZ_SECONDS:-300}"
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=(artifact requests tokenizer); fi

log() { echo "fuzz: $*" >&2; }

fuzz_bin="$(scripts/install-cargo-fuzz.sh | tail -n1)"
export PATH="$fuzz_bin:$PATH"
export RUSTC_BOOTSTRAP=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "building the targets (ASan, optimised, debug assertions)"
build_started=$SECONDS
(cd fuzz && nice cargo fuzz build >&2)
log "built in $((SECONDS - build_started))s"

passed=0
failed=0
report=()
for target in "${targets[@]}"; do
    [[ -d "fuzz/corpus/$target" ]] || { log "no target $target"; failed=$((failed + 1)); continue; }
    mkdir -p "$work/corpus/$target"
    touch "$work/$target.start"
    # JSON targets get a dictionary of the schema's keys and edge values.
    dict=()
    [[ -f "fuzz/dicts/$target.dict" ]] && dict=("-dict=dicts/$target.dict")
    log "$target: ${FUZZ_SECONDS}s"
    status=0
    # -timeout: one input taking 10 s counts as a hang; -rss_limit_mb: a
    # target holding 2 GB is a finding, not a slow machine.
    (cd fuzz && nice cargo fuzz run "$target" "$work/corpus/$target" "corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 "${dict[@]}") >"$work/$target.log" 2>&1 || status=$?
    final_stat() { grep -Eo "^stat::$1: *[0-9]+" "$work/$target.log" | grep -Eo '[0-9]+$' | tail -n1; }
    execs="$(final_stat number_of_executed_units || true)"
    rate="$(final_stat average_exec_per_sec || true)"
    rss="$(final_stat peak_rss_mb || true)"
    last="$(grep -E '^#[0-9]+' "$work/$target.log" | tail -n1 || true)"
    cov="$(grep -Eo 'cov: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"
    ft="$(grep -Eo 'ft: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"
    corp="$(grep -Eo 'corp: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"
    crashes=0
    if [[ -d "fuzz/artifacts/$target" ]]; then
        crashes="$(find "fuzz/artifacts/$target" -type f -newer "$work/$target.start" | wc -l)"
    fi
    line="$(printf '%-10s %4ss %10s execs %6s/s  cov %-5s ft %-6s corpus %-5s peak RSS %s MB  crashes %s' \
        "$target" "$FUZZ_SECONDS" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
        "${rss:-?}" "$crashes")"
    report+=("$line")
    if [[ "$status" -eq 0 && "$crashes" -eq 0 ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        log "FAIL: $target exited $status; the end of its log:"
        tail -n 40 "$work/$target.log" >&2
    fi
done

printf '\n'
printf '%s\n' "${report[@]}"
echo "fuzz: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
