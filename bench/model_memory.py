#!/usr/bin/env python3
"""Peak memory of loading a model, against its artifact size and term count.

For each term count, writes an artifact: the shipped model with its vocabulary
replaced by that many synthetic terms (`--term-len` letters each) and matching
counts, re-sealed (the checksum recomputed). Then, with the given binary:

- start `nbserve serve` on it and read the peak RSS (VmHWM) once it listens;
- reload it through `POST /admin/reload` (the old model is held while the new
  one loads, as on a poll) and read the peak RSS again;
- with `--estimate` (a build that has `gate.max_memory_bytes`), start it once
  more with a 1-byte budget and read the estimate from the refusal.

Prints one table row per size and, with `--json`, writes the figures.

    bench/model_memory.py --bin "${CARGO_TARGET_DIR:-target}/release/nbserve" --terms 31776,500000,2000000
    bench/model_memory.py --bin "${CARGO_TARGET_DIR:-target}/release/nbserve" --estimate   # a build with the budget
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "spam-nb.json"

TOKEN = "model-memory-bench-token"
MIB = 1024 * 1024


def terms(n: int, length: int) -> list[str]:
    """`n` distinct lowercase terms of `length` letters, in sorted order."""
    out = []
    for i in range(n):
        word = []
        for _ in range(length):
            i, r = divmod(i, 26)
            word.append(chr(97 + r))
        out.append("".join(reversed(word)))
    return out


def synth_artifact(
    n_terms: int, term_len: int = 6, version: str | None = None, base: Path = SHIPPED
) -> bytes:
    """The artifact `base` with `n_terms` synthetic terms and counts (and
    `version`, when given), re-sealed.

    Every other field is kept as written (so the stored evaluation still
    passes the default gate); the checksum is the sha256 of the compact JSON
    with an empty checksum, as the artifact documents."""
    text = base.read_bytes().decode().rstrip("\n")
    head, rest = text.split(',"vocabulary":[', 1)
    if version is not None:
        head, found = re.subn(
            r'("model":\{"name":"[^"]*","version":")[^"]*"', rf'\g<1>{version}"', head, count=1
        )
        assert found == 1, "no model version in the base artifact"
    params = re.search(r',"parameters":\{"alpha":([^,]+),"class_count":(\[[0-9,]+\])', rest)
    mlflow = re.search(r',"mlflow_run_id":"[^"]*"', rest)
    class_count = json.loads(params.group(2))
    rows = [
        ",".join(str((i * (7 + c)) % 3 % (n + 1)) for i in range(n_terms))
        for c, n in enumerate(class_count)
    ]
    body = (
        head
        + ',"vocabulary":'
        + json.dumps(terms(n_terms, term_len), separators=(",", ":"))
        + ',"parameters":{"alpha":'
        + params.group(1)
        + ',"class_count":'
        + params.group(2)
        + ',"feature_count":['
        + ",".join(f"[{r}]" for r in rows)
        + "]}"
        + (mlflow.group(0) if mlflow else "")
    )
    return seal(body)


def seal(body: str) -> bytes:
    """An artifact file from its compact JSON up to (not including) the
    checksum field: the checksum is the sha256 of that JSON closed with an
    empty checksum, as the artifact documents (serde's own spelling of every
    value, which an edit must keep)."""
    canonical = body + ',"checksum":""}'
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return (body + f',"checksum":"sha256:{digest}"}}\n').encode()


def edit_shipped(old: str, new: str) -> bytes:
    """The shipped model with `old` (once) replaced by `new`, re-sealed."""
    text = SHIPPED.read_bytes().decode().rstrip("\n")
    body = text[: text.rindex(',"checksum":"')]
    assert body.count(old) == 1, f"{old!r} is not in the shipped model once"
    return seal(body.replace(old, new))


def serve(binary: Path, model: Path, settings: dict[str, str], wait: float = 300):
    """Starts `binary serve` on `model`; returns (process, url) once it is
    ready, or (process, None) when it exited first. Its log goes to
    `model`'s directory (`server.log`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    env.update(
        NBSERVE__SERVER__HOST="127.0.0.1",
        NBSERVE__SERVER__PORT=str(port),
        NBSERVE__MODEL__PATH=str(model),
        NBSERVE__MODEL__DIR=str(model.parent),
        NBSERVE__LOG__FORMAT="json",
        **{f"NBSERVE__{k}": v for k, v in settings.items()},
    )
    with open(model.parent / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc, None
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nbserve not ready after {wait} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def reload(url: str) -> int:
    req = urllib.request.Request(
        url + "/admin/reload",
        data=b"",
        method="POST",
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def estimate(binary: Path, model: Path) -> int | None:
    """The server's own estimate: what a 1-byte budget refusal reports."""
    proc, url = serve(binary, model, {"GATE__MAX_MEMORY_BYTES": "1", "MODEL__MAX_BYTES": str(1 << 40)})
    if url:
        stop(proc)
        return None
    log = (model.parent / "server.log").read_bytes()
    found = re.search(rb"needs an estimated (\d+) bytes", log)
    return int(found.group(1)) if found else None


def measure(binary: Path, n_terms: int, term_len: int, with_budget: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="nbserve-model-memory-"))
    models = work / "models"
    models.mkdir()
    model = models / "spam-nb.json"
    model.write_bytes(SHIPPED.read_bytes() if n_terms == 0 else synth_artifact(n_terms, term_len))
    settings = {"ADMIN__TOKEN": TOKEN, "MODEL__MAX_BYTES": str(1 << 40)}
    if with_budget:
        settings["GATE__MAX_MEMORY_BYTES"] = str(1 << 40)
    started = time.monotonic()
    proc, url = serve(binary, model, settings)
    if url is None:
        raise RuntimeError((model.parent / "server.log").read_text(errors="replace")[-2000:])
    start_s = time.monotonic() - started
    try:
        start_peak = rss_kib(proc.pid, "VmHWM")
        idle = rss_kib(proc.pid, "VmRSS")
        status = reload(url)
        reload_peak = rss_kib(proc.pid, "VmHWM")
        after = rss_kib(proc.pid, "VmRSS")
    finally:
        stop(proc)
    size = model.stat().st_size
    row = {
        "terms": n_terms or len(json.loads(SHIPPED.read_bytes())["vocabulary"]),
        "artifact_bytes": size,
        "start_s": round(start_s, 2),
        "start_peak_kib": start_peak,
        "idle_rss_kib": idle,
        "reload_status": status,
        "reload_peak_kib": reload_peak,
        "rss_after_reload_kib": after,
    }
    if with_budget:
        row["estimate_bytes"] = estimate(binary, model)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, required=True, help="nbserve binary (release)")
    ap.add_argument(
        "--terms",
        default="0,250000,500000,1000000,2000000",
        help="comma-separated term counts (0 = the shipped model as it is)",
    )
    ap.add_argument("--term-len", type=int, default=6)
    ap.add_argument("--estimate", action="store_true", help="the build has gate.max_memory_bytes")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = []
    print(
        "terms      artifact   start peak (x)     reload peak (x)    idle RSS  estimate"
    )
    for n in (int(t) for t in a.terms.split(",")):
        r = measure(a.bin, n, a.term_len, a.estimate)
        rows.append(r)
        mb = r["artifact_bytes"] / MIB
        start, rel = r["start_peak_kib"] / 1024, r["reload_peak_kib"] / 1024
        est = r.get("estimate_bytes")
        print(
            f"{r['terms']:>9,}  {mb:7.1f} MiB  {start:6.1f} MiB ({start / mb:4.1f})"
            f"  {rel:6.1f} MiB ({rel / mb:4.1f})  {r['idle_rss_kib'] / 1024:6.1f} MiB"
            + (f"  {est / MIB:6.1f} MiB" if est else "")
            + ("" if r["reload_status"] == 200 else f"  reload answered {r['reload_status']}")
        )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
