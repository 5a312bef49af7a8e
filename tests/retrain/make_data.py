"""Deterministic small data for the retrain tests (tests/retrain/,
tests/prefect/) from the committed tests/data/sample.csv (300 real
SpamAssassin messages): a small base set for v1, the rest as field data
(feedback or examples), and a fixed stratified holdout.

    python3 tests/retrain/make_data.py OUT_DIR [--base N] [--holdout-share F]

Writes OUT_DIR/base.csv, OUT_DIR/field.csv, OUT_DIR/holdout.csv and two
feedback logs in the format the server writes (one `"source": "example"` line
per field row): feedback-good.jsonl (true labels) and feedback-flipped.jsonl
(every label swapped: the deliberately mislabelled data).
"""
import argparse
import csv
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--source", default=os.path.join(ROOT, "tests", "data", "sample.csv"))
    p.add_argument("--base", type=int, default=40, help="rows in base.csv (v1's training data)")
    p.add_argument("--holdout-share", type=float, default=0.35)
    p.add_argument("--seed", type=int, default=17)
    a = p.parse_args()
    rows = list(csv.DictReader(open(a.source, newline="", encoding="utf-8")))
    rng = random.Random(a.seed)
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    holdout, rest = [], []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n = round(len(group) * a.holdout_share)
        holdout += group[:n]
        rest += group[n:]
    rng.shuffle(rest)
    # The base set holds both classes whatever the shuffle did.
    base = [r for r in rest if r["label"] == "ham"][: a.base * 2 // 3]
    base += [r for r in rest if r["label"] == "spam"][: a.base - len(base)]
    taken = {id(r) for r in base}
    field = [r for r in rest if id(r) not in taken]
    os.makedirs(a.out, exist_ok=True)
    for name, part in (("base", base), ("field", field), ("holdout", holdout)):
        with open(os.path.join(a.out, name + ".csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([r["text"], r["label"]] for r in part)
    labels = sorted(by_label)
    flip = {labels[0]: labels[1], labels[1]: labels[0]}
    for name, relabel in (("feedback-good", lambda l: l), ("feedback-flipped", lambda l: flip[l])):
        with open(os.path.join(a.out, name + ".jsonl"), "w", encoding="utf-8") as f:
            for r in field:
                f.write(json.dumps({"source": "example", "text": r["text"], "label": relabel(r["label"]),
                                    "model_version": "v1", "received_at": "2026-11-30T00:00:00Z"}) + "\n")
    print(f"make_data: base {len(base)}, field {len(field)}, holdout {len(holdout)} rows -> {a.out}")


if __name__ == "__main__":
    main()
