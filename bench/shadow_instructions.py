#!/usr/bin/env python3
"""Instructions per `/predict` with `learning.shadow_scoring` on and off
(valgrind callgrind, bench/request_instructions.py): the cost of scoring
every served prediction with the challenger too.

A schema-3 model is trained on DATA (`nbserve train --statistics`, the
shipped model's settings), the server runs it with `learning.enabled`, and
each run first learns the same EXAMPLES rows (`POST /learn`: a challenger
exists, so shadow scoring has something to score), then answers the
`/predict` requests; on and off differ only in `learning.shadow_scoring`.

    bench/shadow_instructions.py --bin target/release/nbserve \\
        --data data/spamassassin.csv [--mix short] [--warm 100] [--requests 1000]

Prints a JSON object: per request with it on, off, and the difference.
Standard library only.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--mix", choices=ri.MIXES, default="short")
    p.add_argument("--warm", type=int, default=100)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--examples", type=int, default=50)
    p.add_argument("--train-rows", type=int, default=0,
                   help="train on N evenly spaced rows (0: all; a smaller model starts faster under valgrind)")
    args = p.parse_args()
    csv.field_size_limit(sys.maxsize)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "spam-learn.json"
        shipped = json.loads((ri.ROOT / "models" / "spam-nb.json").read_text())["training"]
        train = args.data
        if args.train_rows:
            train = Path(tmp) / "train.csv"
            with open(args.data, newline="", encoding="utf-8") as f, \
                    open(train, "w", newline="", encoding="utf-8") as out:
                reader = csv.DictReader(f)
                writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
                writer.writeheader()
                all_rows = list(reader)
                step = max(1, len(all_rows) // args.train_rows)
                writer.writerows(all_rows[::step][: args.train_rows])
        subprocess.run([str(args.bin), "train", "--data", str(train), "--out", str(model),
                        "--alpha", repr(shipped["alpha"]), "--statistics"],
                       check=True, capture_output=True)
        rows = ri.texts_of(args.data)
        with open(args.data, newline="", encoding="utf-8") as f:
            labels = [r["label"] for r in csv.DictReader(f)]
        step = max(1, len(rows) // args.examples)
        examples = [{"text": rows[i][:4000], "label": labels[i]}
                    for i in range(0, len(rows), step)][: args.examples]
        learn = (("/learn", json.dumps({"examples": examples}).encode()),)
        result = {}
        for shadow in ("true", "false"):
            # A learn under valgrind (a refit of the whole vocabulary) can
            # outlast the default request timeout.
            os.environ.update({"NBSERVE__LEARNING__ENABLED": "true",
                               "NBSERVE__LEARNING__SHADOW_SCORING": shadow,
                               "NBSERVE__SERVER__REQUEST_TIMEOUT_MS": "600000",
                               # A model of a few rows may miss the gate: not what is measured.
                               "NBSERVE__GATE__MIN_F1_MACRO": "0"})
            r = ri.measure("nbserve", args.bin, args.data, args.mix, args.warm, args.requests,
                           model=model, before=learn)
            result["on" if shadow == "true" else "off"] = r["per_request"]
    result.update({"mix": args.mix, "requests": args.requests, "binary": str(args.bin),
                   "shadow_cost": result["on"] - result["off"]})
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
