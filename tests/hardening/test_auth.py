"""Token-protected routes refuse a request from its headers, before its body.

The feedback token (and the admin token) used to be checked only once the
whole body had been read: a client without the token that announced a 1 MB
body and sent none held the request open until the request timeout (408)
instead of getting its 401 at once. Now every protected route answers such a
request immediately, with the documented 401 JSON error.

Run with `-s` to see the measured answer times.
"""

from __future__ import annotations

import json
import socket
import time

FEEDBACK_TOKEN = "labels-only-token"
ADMIN_TOKEN = "admin-only-secret"
REQUEST_TIMEOUT_MS = 10_000
ROUTES = ["/feedback", "/feedback/batch", "/examples", "/admin/reload"]


def announce_and_wait(port: int, path: str, auth: str | None) -> tuple[int, dict, float]:
    """Sends a POST head announcing a 1,000,000-byte body, sends no body,
    and reads the answer; returns its status, JSON body and the seconds it
    took. The socket's own timeout is far past the request timeout."""
    head = [
        f"POST {path} HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        "content-length: 1000000",
    ]
    if auth:
        head.append(f"authorization: {auth}")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"{path}: closed without an answer"
            buf += chunk
        head_bytes, _, body = buf.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")
        )
        while len(body) < length:
            chunk = s.recv(65536)
            assert chunk, f"{path}: body cut short"
            body += chunk
    return status, json.loads(body[:length]), time.monotonic() - started


def test_no_token_and_an_unsent_body_get_401_at_once_on_every_protected_route(
    release_bin, models_dir, serve, tmp_path
):
    log = tmp_path / "feedback.jsonl"
    server = serve(
        release_bin,
        {
            "FEEDBACK__TOKEN": FEEDBACK_TOKEN,
            "ADMIN__TOKEN": ADMIN_TOKEN,
            "FEEDBACK__ACCEPT_EXAMPLES": "true",
            "FEEDBACK__LOG_PATH": str(log),
            "SERVER__REQUEST_TIMEOUT_MS": str(REQUEST_TIMEOUT_MS),
        },
    )
    for path in ROUTES:
        for auth in (None, "Bearer wrong-token-here"):
            status, body, took = announce_and_wait(server.port, path, auth)
            print(f"\n{path} auth={auth!r}: {status} {body['error']['code']} in {took:.2f} s")
            assert status == 401, (path, auth, status, body)
            assert body["error"]["code"] == "unauthorized"
            assert body["error"]["message"] == "missing or invalid bearer token"
            # Well before the request timeout: nothing waited for the body.
            assert took < REQUEST_TIMEOUT_MS / 1000 / 4, took
    assert server.alive()
    assert server.get("/health").status == 200
    assert not log.exists() or log.read_text() == ""
