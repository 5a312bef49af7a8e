"""A large feedback log for measuring `nbserve retrain`, made in seconds from
the committed tests/data/sample.csv (300 real SpamAssassin messages).

    python3 tests/hardening/make_feedback_log.py OUT_DIR [--mb 100]

Writes OUT_DIR/train.csv and OUT_DIR/holdout.csv (every third sample row is
held out) and OUT_DIR/feedback.jsonl: `--mb` MB of lines in the format the
server writes for `POST /examples`, each a training message with its true
label and a distinct tail of one-letter words. The tail makes every text
distinct (so none is dropped as a duplicate) without adding a term: the
tokenizer keeps only words of two or more characters, so the vocabulary, and
the model, stay those of the sample.

Standard library only; `test_retrain_data.py` imports it.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = ROOT / "tests" / "data" / "sample.csv"


def read_sample() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The sample split as tests/retrain.rs splits it: (train, holdout)."""
    with open(SAMPLE, newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    holdout = [r for i, r in enumerate(rows) if i % 3 == 0]
    train = [r for i, r in enumerate(rows) if i % 3 != 0]
    return train, holdout


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


def tail(i: int) -> str:
    """`i` as one-letter words (base 26): distinct for every i, no token."""
    letters = []
    while True:
        i, d = divmod(i, 26)
        letters.append(chr(ord("a") + d))
        if i == 0:
            return " ".join(letters)


def feedback_line(text: str, label: str) -> str:
    return json.dumps(
        {"source": "example", "text": text, "label": label, "model_version": "v1",
         "received_at": "2026-11-30T00:00:00Z"}
    ) + "\n"


def write_log(path: Path, rows: list[tuple[str, str]], size: int) -> int:
    """Writes at least `size` bytes of distinct labelled lines; returns the count."""
    n = written = 0
    with open(path, "w", encoding="utf-8") as f:
        chunk = []
        while written < size:
            text, label = rows[n % len(rows)]
            line = feedback_line(f"{text} {tail(n)}", label)
            chunk.append(line)
            written += len(line.encode())
            n += 1
            if len(chunk) == 1000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
    return n


def make(out: Path, mb: float) -> dict[str, Path | int]:
    """Writes the three inputs into `out`; returns their paths and the line count."""
    out.mkdir(parents=True, exist_ok=True)
    train, holdout = read_sample()
    write_csv(out / "train.csv", train)
    write_csv(out / "holdout.csv", holdout)
    lines = write_log(out / "feedback.jsonl", train, int(mb * 1_000_000))
    return {"train": out / "train.csv", "holdout": out / "holdout.csv",
            "log": out / "feedback.jsonl", "lines": lines}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--mb", type=float, default=100, help="size of feedback.jsonl in MB (10^6 bytes)")
    a = p.parse_args()
    made = make(a.out, a.mb)
    print(f"make_feedback_log: {made['lines']} lines, {made['log'].stat().st_size} bytes -> {made['log']}")


if __name__ == "__main__":
    main()
