#!/usr/bin/env python3
"""Cut a labelled CSV into N shard CSVs (rows dealt round-robin, header kept),
for `nbserve count` per shard: the distributed-training checks and figures.

    bench/shard_csv.py --data data/spamassassin.csv --shards 8 --out-dir /tmp/shards

Prints the shard paths, one a line. Standard library only.
"""

import argparse
import csv
import sys
from pathlib import Path


def shard(data: Path, n: int, out_dir: Path) -> list[Path]:
    """Writes `out_dir/shard-000.csv`... and returns their paths."""
    csv.field_size_limit(sys.maxsize)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"shard-{i:03d}.csv" for i in range(n)]
    files = [p.open("w", newline="", encoding="utf-8") for p in paths]
    try:
        writers = [csv.writer(f) for f in files]
        with data.open(newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            header = next(rows)
            for w in writers:
                w.writerow(header)
            for i, row in enumerate(rows):
                writers[i % n].writerow(row)
    finally:
        for f in files:
            f.close()
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    a = ap.parse_args()
    if a.shards < 1:
        ap.error("--shards must be at least 1")
    for p in shard(a.data, a.shards, a.out_dir):
        print(p)


if __name__ == "__main__":
    main()
