#!/usr/bin/env python3
"""Spam recall by message length, for the model comparison in docs/model.md.

  recall_by_length.py TEST.csv NAME=PRED.jsonl [NAME=PRED.jsonl ...]

PRED.jsonl is `nbserve predict --data TEST.csv --json` output (one line per row of
TEST.csv). Prints a markdown table: per model, the recall of the `spam` class for
texts of < 500, 500-1,000, 1,000-2,000, 2,000-4,000 and > 4,000 characters, with the
number of spam documents in each bucket. Standard library only.
"""
import csv
import json
import sys

BUCKETS = [(0, 500, "<500"), (500, 1000, "500–1k"), (1000, 2000, "1k–2k"),
           (2000, 4000, "2k–4k"), (4000, None, ">4k")]


def main():
    csv.field_size_limit(sys.maxsize)
    with open(sys.argv[1], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    spam = [i for i, r in enumerate(rows) if r["label"] == "spam"]

    def bucket(i):
        n = len(rows[i]["text"])
        return next(k for k, (lo, hi, _) in enumerate(BUCKETS) if n >= lo and (hi is None or n < hi))

    sizes = [sum(1 for i in spam if bucket(i) == k) for k in range(len(BUCKETS))]
    head = " | ".join(f"{name} (n={n})" for (_, _, name), n in zip(BUCKETS, sizes))
    print(f"| model | spam recall {head} |")
    print("|---|" + "---|" * len(BUCKETS))
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        with open(path, encoding="utf-8") as f:
            labels = [json.loads(line)["label"] for line in f if line.strip()]
        if len(labels) != len(rows):
            sys.exit(f"{path}: {len(labels)} predictions for {len(rows)} rows")
        cells = []
        for k in range(len(BUCKETS)):
            members = [i for i in spam if bucket(i) == k]
            hit = sum(1 for i in members if labels[i] == "spam")
            cells.append(f"{hit / len(members):.2f}" if members else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
