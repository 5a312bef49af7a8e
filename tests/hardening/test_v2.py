"""Open Inference Protocol (V2) infer: a request cannot multiply its answer.

An infer request that named the same output thousands of times got the whole
`[N, C]` tensor encoded once per copy: a 69 KB request drew an answer of tens
of megabytes, and a 756 KB one aborted a replica under a 3 GiB address-space
limit. Unknown and repeated outputs are now refused with 400 before any
scoring, each output is encoded once, and the largest answer follows from the
request limits (`server.max_batch_size` rows of the model's outputs).

Run with `-s` to see the measured answer sizes and peak RSS.
"""

from __future__ import annotations

import json
import struct

INFER = "/v2/models/spam-nb/infer"
# The defaults: server.max_batch_size.
N = 1000
# Peak resident set a replica may reach while refusing the attacks: the
# model and the server's buffers, nowhere near one answer per copy.
MAX_PEAK_RSS_KIB = 150 * 1024


def infer_body(n: int, outputs: list[dict], **extra) -> bytes:
    """A compact JSON infer request for `n` short texts."""
    texts = [f"win {i}" for i in range(n)]
    req = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [n], "data": texts}],
        "outputs": outputs,
        **extra,
    }
    return json.dumps(req, separators=(",", ":")).encode()


def post(server, body: bytes, headers: dict[str, str] | None = None):
    h = {"content-type": "application/json", **(headers or {})}
    return server.request("POST", INFER, body, h, timeout=120)


def attack(server, what: str, body: bytes):
    """Sends `body` and prints what it cost; a dropped connection is
    reported with the server's exit status and fails the test."""
    try:
        answer = post(server, body)
    except OSError as e:
        server.proc.wait(30)
        tail = server.log_text()[-300:]
        raise AssertionError(
            f"{what}: request {len(body)} B -> no answer ({e!r}); "
            f"server exit {server.proc.returncode}: {tail}"
        ) from e
    report(what, body, answer, server)
    return answer


def report(what: str, request: bytes, answer, server) -> None:
    print(
        f"\n{what}: request {len(request)} B -> {answer.status}, "
        f"answer {len(answer.body)} B, VmHWM {server.peak_rss_kib()} KiB"
    )


def assert_refused_small(answer, server) -> None:
    assert answer.status == 400, answer
    assert len(answer.body) < 1024, len(answer.body)
    # The protocol's error shape: {"error": "<message>"}.
    message = answer.json()["error"]
    assert "more than once" in message, message
    assert server.alive()
    assert server.get("/health").status == 200


def test_an_output_named_2500_times_is_refused_not_encoded_2500_times(release_bin, models_dir, serve):
    server = serve(release_bin)
    body = infer_body(N, [{"name": "probabilities"}] * 2500)
    answer = attack(server, "2,500 copies of probabilities", body)
    assert_refused_small(answer, server)
    # The binary tensor data path refuses the same way.
    binary = infer_body(N, [{"name": "probabilities", "parameters": {"binary_data": True}}] * 2500)
    answer = attack(server, "2,500 binary copies", binary)
    assert_refused_small(answer, server)
    assert server.peak_rss_kib() < MAX_PEAK_RSS_KIB


def test_30000_copies_do_not_abort_a_replica_capped_at_3_gib(release_bin, models_dir, serve):
    server = serve(release_bin, rlimit_as=3 * 1024**3)
    body = infer_body(N, [{"name": "probabilities"}] * 30_000)
    answer = attack(server, "30,000 copies under RLIMIT_AS 3 GiB", body)
    assert_refused_small(answer, server)
    assert server.peak_rss_kib() < MAX_PEAK_RSS_KIB
    assert "memory allocation" not in server.log_text()


def test_the_largest_allowed_answer_is_bounded_by_the_request_limits(release_bin, models_dir, serve):
    """Both outputs once each, for the most texts a request may carry: the
    answer holds N labels, N ids and N x C probabilities, and nothing more."""
    server = serve(release_bin)
    classes = server.get("/v2/models/spam-nb").json()["classes"]
    both = [{"name": "label"}, {"name": "probabilities"}]
    body = infer_body(N, both)
    answer = post(server, body)
    report("both outputs, JSON", body, answer, server)
    assert answer.status == 200, answer
    out = answer.json()["outputs"]
    assert [o["name"] for o in out] == ["label", "probabilities"]
    assert len(out[1]["data"]) == N * len(classes)
    # Per row: a prediction id (36 + comma), a quoted label, C numbers of at
    # most 24 characters each; plus a fixed header.
    longest = max(len(c) for c in classes)
    bound = N * (37 + longest + 3 + 25 * len(classes)) + 4096
    assert len(answer.body) <= bound, (len(answer.body), bound)

    binary = infer_body(N, both, parameters={"binary_data_output": True})
    answer = post(server, binary)
    report("both outputs, binary", binary, answer, server)
    assert answer.status == 200, answer
    header_len = int(answer.headers["inference-header-content-length"])
    header = json.loads(answer.body[:header_len])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes[1] == N * len(classes) * struct.calcsize("<d")
    assert len(answer.body) == header_len + sum(sizes) <= bound
    assert server.peak_rss_kib() < MAX_PEAK_RSS_KIB


def test_concurrent_bodies_of_tiny_texts_do_not_multiply_memory(release_bin, models_dir, serve):
    """A 2 MiB body of 700,000 empty strings behind shape [1] is refused at
    the second text: it is not parsed into a tree of values and collected
    whole (tens of bytes of memory per 3 bytes of body), 16 at once."""
    import threading

    server = serve(release_bin)
    k = (2 * 1024 * 1024 - 200) // 3
    body = (
        b'{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":['
        + b'"",' * k
        + b'"x"]}]}'
    )
    answers = []

    def send():
        answers.append(post(server, body))

    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report("16 x 2 MiB of empty texts", body, answers[0], server)
    assert [a.status for a in answers] == [400] * 16, answers
    assert answers[0].json()["error"] == "shape [1] but more texts"
    # The bodies themselves (32 MiB) and a copy of each one's data, no more.
    assert server.peak_rss_kib() < 100 * 1024
