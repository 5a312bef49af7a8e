"""A minimal OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
`ExportTraceServiceRequest`, decoded by the official `opentelemetry-proto`
classes (a body that does not decode is answered 400 and recorded as an
error, so a malformed export fails the test instead of passing unseen).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class Span:
    """One received span, with hex ids and plain attribute values."""

    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    name: str
    kind: str
    attributes: dict
    status_code: int
    resource: dict
    start_ns: int
    end_ns: int


@dataclass
class Receiver:
    """The server and what it received."""

    port: int
    requests: int = 0
    spans: list[Span] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, predicate, timeout: float = 20) -> list[Span]:
        """The spans so far once `predicate(spans)` holds (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans never matched; got {spans!r}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


def _decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for rs in request.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        trace_state=s.trace_state,
                        name=s.name,
                        kind=PbSpan.SpanKind.Name(s.kind),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        status_code=s.status.code,
                        resource=resource,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                    )
                )
    return out


def start_receiver(port: int = 0) -> Receiver:
    """Starts a receiver on 127.0.0.1 (`port` 0: any free port)."""
    receiver = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with receiver.lock:
                receiver.requests += 1
                receiver.content_types.add(self.headers.get("content-type", ""))
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            try:
                spans = _decode(body)
            except Exception as e:  # noqa: BLE001 - any decode failure is the finding
                with receiver.lock:
                    receiver.errors.append(repr(e))
                self.send_response(400)
                self.end_headers()
                return
            with receiver.lock:
                receiver.spans.extend(spans)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    receiver._server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
