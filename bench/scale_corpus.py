#!/usr/bin/env python3
"""A large labelled corpus from real text: data/spamassassin.csv repeated and
perturbed, written straight into N shard CSVs (rows dealt round-robin), until
the shards hold at least --megabytes MB. For the scale figures of
docs/distributed-training.md (bench/scale.sh).

    bench/scale_corpus.py --data data/spamassassin.csv --megabytes 1024 --shards 16 --out-dir /big/shards

Copy 0 is the corpus as is; every later copy of a message drops each word
with probability 0.1 and swaps each remaining word with a word drawn from the
same message with probability 0.05 (seeded by --seed and the copy), so the
copies are new documents over the same vocabulary and class balance, not
duplicates. Standard library only; prints the shard paths and the size.
"""

import argparse
import csv
import random
import sys
from pathlib import Path


def perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    if not words:
        return text
    kept = [w for w in words if rng.random() >= 0.1] or words[:1]
    return " ".join(rng.choice(words) if rng.random() < 0.05 else w for w in kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--megabytes", type=float, required=True)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    csv.field_size_limit(sys.maxsize)
    with a.data.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows)
        corpus = [r for r in rows]
    a.out_dir.mkdir(parents=True, exist_ok=True)
    paths = [a.out_dir / f"shard-{i:03d}.csv" for i in range(a.shards)]
    files = [p.open("w", newline="", encoding="utf-8") for p in paths]
    writers = [csv.writer(f) for f in files]
    for w in writers:
        w.writerow(header)
    target = a.megabytes * 1e6
    written, n, copy = 0, 0, 0
    while written < target:
        rng = random.Random(a.seed * 1_000_003 + copy)
        for text, label in corpus:
            writers[n % a.shards].writerow([text if copy == 0 else perturb(text, rng), label])
            n += 1
        copy += 1
        written = sum(f.tell() for f in files)
    for f in files:
        f.close()
    for p in paths:
        print(p)
    print(f"{n} rows, {copy} copies, {written / 1e6:.1f} MB in {a.shards} shards", file=sys.stderr)


if __name__ == "__main__":
    main()
