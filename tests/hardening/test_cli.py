"""The operator's side of the release binary: what its log shows when a
model's name is hostile, which token settings it accepts, and how it behaves
at the head of a pipe whose reader leaves.

- A model name or version (from an artifact or a registry) holding a newline
  and ESC sequences forged a whole `pretty` log line and repainted the
  terminal; `json` lines carried C1 controls and line separators raw. Control
  characters in names are now refused (`train`, every load); the Unicode line
  separators and bidirectional controls a name may still hold are escaped.
- Token files: trailing spaces, non-ASCII, all-space tokens and the same
  secret for admin and feedback were accepted; `/dev/zero` was read until
  memory ran out, a FIFO blocked start-up for good.
- `nbserve config | head -1` panicked (exit 101) in about 2 runs of 5;
  `nbserve predict --data X.csv | head` printed "Broken pipe", exit 1.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port

SAMPLE = ROOT / "tests" / "data" / "sample.csv"

# What a name may hold that a log must still escape (control characters are
# refused): a line separator and a fake log line, a paragraph separator, a
# right-to-left override, a left-to-right isolate.
FORGED_NAME = "evil\u20282026-01-01T00:00:00.000000Z  INFO nbserve: forged\u2029x\u202e"
FORGED_VERSION = "1\u2066"
# A newline and a fake log line, an ESC colour, a C1 CSI (U+009B), a CR.
CONTROL_NAME = "evil\n2026-01-01T00:00:00.000000Z  INFO nbserve: forged\x1b[31m\u009b2J\r"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBSERVE__")}
    env.pop("RUST_LOG", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def nbserve(binary: Path, *args: str, env: dict[str, str] | None = None,
            rlimit_as: int | None = None, **kw) -> subprocess.CompletedProcess:
    """Runs the binary to completion (20 s at most) and returns its result."""

    def limit():
        if rlimit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))

    return subprocess.run(
        [str(binary), *args],
        env={**clean_env(), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        timeout=20,
        preexec_fn=limit,
        **kw,
    )


@pytest.fixture
def forged_model(release_bin: Path, tmp_path: Path) -> Path:
    """A model trained with a hostile name and version."""
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    out = models / "forged.json"
    r = nbserve(release_bin, "train", "--data", str(SAMPLE), "--out", str(out),
                "--name", FORGED_NAME, "--model-version", FORGED_VERSION)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return out


def serve_pretty_until_listening(binary: Path, model: Path, log_path: Path) -> bytes:
    """Starts `serve` with the `pretty` log into a file, stops it once it
    listens, and returns the whole log."""
    env = {
        **clean_env(),
        "NBSERVE__SERVER__HOST": "127.0.0.1",
        "NBSERVE__SERVER__PORT": str(free_port()),
        "NBSERVE__MODEL__PATH": str(model),
        "NBSERVE__MODEL__DIR": str(model.parent),
        "NBSERVE__GATE__MIN_F1_MACRO": "0",
        "NBSERVE__LOG__FORMAT": "pretty",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=subprocess.DEVNULL,
                                stderr=log)
    try:
        deadline = time.monotonic() + 60
        while b"listening" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_bytes()[-4000:]
            assert time.monotonic() < deadline, "no 'listening' line within 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log_path.read_bytes()


RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_a_hostile_model_name_stays_inside_its_pretty_log_line(release_bin, forged_model, tmp_path):
    log = serve_pretty_until_listening(release_bin, forged_model, tmp_path / "pretty.log")
    text = log.decode()
    print(f"\npretty log, {len(text.splitlines())} lines:\n{text}")
    assert b"\x1b" not in log, "an ESC (stderr is no terminal: no colours)"
    assert not RAW_CONTROL.search(text), RAW_CONTROL.search(text)
    lines = text.splitlines()
    stamp = re.compile(r"^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z +[A-Z]+ ")
    assert all(stamp.match(line) for line in lines), lines
    forged = [line for line in lines if "forged" in line]
    assert len(forged) == 1 and "listening" in forged[0], forged
    assert not any(line.startswith("2026-01-01T00:00:00.000000Z") for line in lines)
    assert r"model=evil\u{2028}2026-01-01T00:00:00.000000Z  INFO nbserve: forged\u{2029}x\u{202e}" in forged[0]
    assert r"version=1\u{2066}" in forged[0]


def test_json_log_lines_hold_no_raw_control_character(release_bin, serve, forged_model):
    server = serve(release_bin, {"GATE__MIN_F1_MACRO": "0"}, model=forged_model)
    server.stop()
    raw = server.log_path.read_bytes()
    for line in raw.decode().splitlines():
        assert not RAW_CONTROL.search(line), (RAW_CONTROL.search(line), line)
    listening = [l for l in server.log_lines() if "listening" in l.get("message", "")]
    assert len(listening) == 1
    # Escaped as JSON: the value a log pipeline decodes is the original one.
    assert listening[0]["model"] == FORGED_NAME
    assert listening[0]["version"] == FORGED_VERSION


def test_control_characters_in_a_name_are_refused_not_logged(release_bin, tmp_path):
    out = tmp_path / "never.json"
    for flag in ("--name", "--model-version"):
        r = nbserve(release_bin, "train", "--data", str(SAMPLE), "--out", str(out), flag, CONTROL_NAME)
        err = r.stderr.decode()
        assert r.returncode == 4, err
        assert "holds a control character" in err, err
        assert not RAW_CONTROL.search(err.rstrip("\n")), (RAW_CONTROL.search(err), err)
        assert not out.exists()


# ---------------------------------------------------------------- tokens

def token_file(tmp_path: Path, content: bytes, mode: int = 0o600, name: str = "token") -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    p.chmod(mode)
    return p


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "the token is empty"),
        (b"  \n\n", "the token is empty"),
        (b"two words-token\n", "must be visible ASCII"),
        (b"tab\there-token\n", "must be visible ASCII"),
        ("caf\u00e9-au-lait-token\n".encode(), "must be visible ASCII"),
        (b"\xff\xfe-not-utf8-token", "must be visible ASCII"),
        (b"short\n", "at least 8 characters"),
    ],
)
def test_a_bad_token_file_is_refused_without_quoting_it(release_bin, tmp_path, content, says):
    f = token_file(tmp_path, content)
    r = nbserve(release_bin, "config", env={"NBSERVE__FEEDBACK__TOKEN_FILE": str(f)})
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 3, err
    assert err.startswith(f"nbserve: invalid setting feedback.token_file: {f}: "), err
    assert says in err, err
    secret = content.strip().decode(errors="ignore")
    assert not secret or secret not in err, err


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "oversized"])
def test_a_token_file_that_is_no_small_regular_file_is_refused_at_once(release_bin, tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif kind == "oversized":
        path = token_file(tmp_path, b"a" * 5000)
    else:
        path = Path(kind)
    started = time.monotonic()
    try:
        # 1 GiB of address space: the code before the fix read /dev/zero
        # until allocation failed; it must not take the machine with it.
        r = nbserve(release_bin, "config", env={"NBSERVE__ADMIN__TOKEN_FILE": str(path)},
                    rlimit_as=1 << 30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"nbserve config with a {kind} token file still running after 20 s")
    took = time.monotonic() - started
    err = r.stderr.decode(errors="replace")
    print(f"\n{kind}: exit {r.returncode} in {took:.2f} s: {err.strip()}")
    assert r.returncode == 3, err
    assert err.startswith(f"nbserve: invalid setting admin.token_file: cannot read {path}: "), err
    assert ("larger than 4096 bytes" if kind == "oversized" else "not a regular file") in err


def test_one_secret_for_admin_and_feedback_is_refused(release_bin, tmp_path):
    f = token_file(tmp_path, b"shared-secret-123\n")
    r = nbserve(release_bin, "config", env={
        "NBSERVE__ADMIN__TOKEN_FILE": str(f),
        "NBSERVE__FEEDBACK__TOKEN": " shared-secret-123 ",
    })
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 3, err
    assert "invalid setting feedback.token: must differ from admin.token" in err, err
    assert "shared-secret-123" not in err


def test_a_padded_token_file_is_trimmed_and_an_open_one_warned_about(release_bin, serve, models_dir, tmp_path):
    f = token_file(tmp_path, b"  \tpadded-admin-token \r\n\n", mode=0o644)
    server = serve(release_bin, {"ADMIN__TOKEN_FILE": str(f)})
    ok = server.post_json("/admin/reload", {}, headers={"authorization": "Bearer padded-admin-token"})
    assert ok.status == 200, ok
    padded = server.post_json("/admin/reload", {},
                              headers={"authorization": "Bearer  \tpadded-admin-token "})
    assert padded.status == 401, padded
    warnings = [l for l in server.log_lines() if l.get("level") == "WARN"
                and "admin.token_file" in l.get("message", "")]
    assert len(warnings) == 1, server.log_text()
    assert "can be read by every user of this machine (mode 0644)" in warnings[0]["message"]
    assert "padded-admin-token" not in server.log_text()


def test_a_kubernetes_style_secret_mount_is_read_without_warning(release_bin, serve, models_dir, tmp_path):
    secret = tmp_path / "secret"
    (secret / "..2026_12_01_data").mkdir(parents=True)
    token_file(secret / "..2026_12_01_data", b"mounted-admin-token\n", mode=0o440)
    (secret / "..data").symlink_to("..2026_12_01_data")
    (secret / "token").symlink_to("..data/token")
    server = serve(release_bin, {"ADMIN__TOKEN_FILE": str(secret / "token")})
    ok = server.post_json("/admin/reload", {}, headers={"authorization": "Bearer mounted-admin-token"})
    assert ok.status == 200, ok
    assert not [l for l in server.log_lines() if l.get("level") == "WARN"], server.log_text()


# ---------------------------------------------------------------- broken pipes

def big_csv(tmp_path: Path) -> Path:
    p = tmp_path / "big.csv"
    p.write_text("text,label\n" + "buy cheap pills now,spam\n" * 50_000)
    return p


def in_shell_pipe(binary: Path, args: str, runs: int) -> list[tuple[int, str]]:
    """Runs `nbserve ARGS | head -1` in bash `runs` times: (exit status of
    nbserve, its stderr) for each."""
    script = f"'{binary}' {args} 2>\"$ERR\" | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    results = []
    for i in range(runs):
        err = Path(os.environ.get("TMPDIR", "/tmp")) / f"nbserve-pipe-{os.getpid()}-{i}.err"
        r = subprocess.run(["bash", "-c", script], env={**clean_env(), "ERR": str(err)},
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        results.append((int(r.stdout.strip()), err.read_text(errors="replace")))
        err.unlink()
    return results


def test_config_into_head_exits_quietly(release_bin):
    results = in_shell_pipe(release_bin, "config", runs=20)
    print(f"\nnbserve config | head -1, 20 runs: exit statuses {sorted({s for s, _ in results})}")
    assert results == [(0, "")] * 20, [r for r in results if r != (0, "")][:3]


def test_predict_into_head_exits_quietly(release_bin, tmp_path):
    csv = big_csv(tmp_path)
    results = in_shell_pipe(release_bin, f"predict --model models/spam-nb.json --data '{csv}'", runs=5)
    print(f"\nnbserve predict --data | head -1, 5 runs: exit statuses {sorted({s for s, _ in results})}")
    assert results == [(0, "")] * 5, results[:3]


@pytest.mark.parametrize("args", [
    ["config"],
    ["predict", "--model", "models/spam-nb.json", "hello there"],
    ["evaluate", "--model", "models/spam-nb.json", "--data", str(SAMPLE)],
    ["check", "--model", "models/spam-nb.json", "--min-f1-macro", "0"],
])
def test_a_reader_gone_before_the_first_write_ends_the_command_quietly(release_bin, args):
    reader, writer = os.pipe()
    os.close(reader)
    try:
        r = subprocess.run([str(release_bin), *args], env=clean_env(), cwd=ROOT, stdout=writer,
                           stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(writer)
    assert (r.returncode, r.stderr.decode(errors="replace")) == (0, "")
