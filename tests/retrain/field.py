"""Labelled data from the field through the API, for test_retrain_loop.py.

    python3 field.py URL FIELD_CSV feedback     # first half: /predict/batch (texts kept), then /feedback/batch with the true labels
                                                # second half: POST /examples (batch) with the true labels
    python3 field.py URL FIELD_CSV mislabelled  # POST /examples with 2 labels in 5 swapped (rows 0, 2, 5, 7, ...)

Prints one JSON line of counts; exits 1 when any call was not accepted.
"""
import csv
import http.client
import json
import sys
from urllib.parse import urlparse

BATCH = 50


def call(conn, path, payload):
    conn.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    try:
        data = json.loads(body)
    except ValueError:
        data = {"raw": body[:300].decode("utf-8", "replace")}
    return resp.status, data


def main():
    url, field_csv, mode = sys.argv[1:4]
    u = urlparse(url)
    rows = list(csv.DictReader(open(field_csv, newline="", encoding="utf-8")))
    labels = sorted({r["label"] for r in rows})
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    counts = {"feedback": 0, "examples": 0, "refused": 0}
    problems = []

    def refused(what, status, data):
        counts["refused"] += 1
        if len(problems) < 5:
            problems.append(f"{what}: HTTP {status} {json.dumps(data)[:300]}")

    if mode == "feedback":
        half = len(rows) // 2
        via_feedback, via_examples = rows[:half], rows[half:]
        for i in range(0, len(via_feedback), BATCH):
            chunk = via_feedback[i:i + BATCH]
            status, data = call(conn, "/predict/batch", {"texts": [r["text"] for r in chunk]})
            if status != 200:
                refused("/predict/batch", status, data)
                continue
            ids = [p["prediction_id"] for p in data["predictions"]]
            items = [{"prediction_id": pid, "label": r["label"]} for pid, r in zip(ids, chunk)]
            status, data = call(conn, "/feedback/batch", {"items": items})
            if status not in (200, 202):
                refused("/feedback/batch", status, data)
                continue
            bad = [r for r in data.get("results", []) if r.get("result") != "accepted"]
            for r in bad:
                refused("/feedback/batch item", status, r)
            if data.get("accepted") != len(items) and not bad:
                refused("/feedback/batch", status, data)
            counts["feedback"] += data.get("accepted", 0)
    else:
        via_examples = rows
    flip = {labels[0]: labels[-1], labels[-1]: labels[0]}
    for i in range(0, len(via_examples), BATCH):
        chunk = via_examples[i:i + BATCH]
        # Mislabelled: enough to make the candidate clearly worse than the
        # model in service, not so much that the absolute gate alone catches it.
        examples = [{"text": r["text"],
                     "label": flip[r["label"]] if mode != "feedback" and (i + j) % 5 in (0, 2) else r["label"]}
                    for j, r in enumerate(chunk)]
        status, data = call(conn, "/examples", {"examples": examples})
        if status != 200 or data.get("accepted") != len(examples):
            refused("/examples", status, data)
            continue
        counts["examples"] += len(examples)
    conn.close()
    print(json.dumps({"mode": mode, **counts, "problems": problems}))
    sys.exit(1 if counts["refused"] else 0)


if __name__ == "__main__":
    main()
