#!/usr/bin/env python3
"""Instructions per `/predict` request with shadow scoring off and on
(valgrind callgrind, through bench/request_instructions.py's method).

    bench/shadow_instructions.py --bin "${CARGO_TARGET_DIR:-target}/release/nbserve" [--requests 1000]

A champion is trained with `--statistics` (alpha 0.01, min_df 2) on the
training part of nbserve's 80/20 split of data/spamassassin.csv less 500 rows;
each server is started on it with learning on, and right after it is ready
(in both callgrind runs, so it cancels out) those 500 rows go through
POST /learn, making a challenger. `off`: `learning.shadow_scoring = false`;
`on`: the default, every served prediction scored by the challenger too.
Prints instructions per request for each, per request mix (`short`: Subject
lines, `corpus`: whole mails), and the ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import request_instructions as ri  # noqa: E402

ROOT = ri.ROOT
LEARNED = 500


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "spamassassin.csv")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warm", type=int, default=100)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="shadow-instructions-"))
    train, test = work / "train.csv", work / "test.csv"
    subprocess.run([str(args.bin), "split", "--data", str(args.data), "--train-out", str(train),
                    "--test-out", str(test), "--test-size", "0.2", "--seed", "42"],
                   check=True, capture_output=True)
    csv.field_size_limit(sys.maxsize)
    with train.open(newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    # The split groups rows by label: every k-th row, so both labels are learned.
    step = len(rows) // LEARNED
    learned = [rows[i] for i in range(0, step * LEARNED, step)]
    base = [r for i, r in enumerate(rows) if not (i % step == 0 and i < step * LEARNED)]
    with (work / "base.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(base)
    model = work / "models" / "champion.json"
    model.parent.mkdir()
    subprocess.run([str(args.bin), "train", "--data", str(work / "base.csv"), "--test-data", str(test),
                    "--statistics", "--alpha", "0.01", "--min-df", "2", "--out", str(model)],
                   check=True, capture_output=True)
    learn_body = json.dumps({"examples": [{"text": t, "label": lab} for t, lab in learned]}).encode()

    learn = (("/learn", learn_body),)
    results = {}
    for mix in ri.MIXES:
        for value in ("false", "true"):
            # Read by request_instructions' server command (it copies the
            # environment); a learn under valgrind outlasts the default
            # request timeout.
            os.environ.update({
                "NBSERVE__LEARNING__ENABLED": "true",
                "NBSERVE__LEARNING__SHADOW_SCORING": value,
                "NBSERVE__SERVER__REQUEST_TIMEOUT_MS": "600000",
            })
            r = ri.measure("nbserve", args.bin, args.data, mix, args.warm, args.requests, work,
                           model=model, before=learn)
            results[mix, value] = r["per_request"]
            print(f"shadow_instructions: mix {mix}, shadow scoring {value}: "
                  f"{r['per_request']:,.0f} instructions per /predict", file=sys.stderr)
    print(f"Instructions per /predict (callgrind, {args.requests:,} requests; champion with "
          f"--statistics, {LEARNED} rows learned):")
    print("| request mix | shadow scoring off | on | on / off |")
    print("|---|---:|---:|---:|")
    for mix in ri.MIXES:
        off, on = results[mix, "false"], results[mix, "true"]
        print(f"| {mix} | {off:,.0f} | {on:,.0f} | {on / off:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
