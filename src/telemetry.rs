//! Log subscriber set-up.
//!
//! Field values often come from outside: a model's name and version from an
//! artifact or a registry, an error message quoting a file, a request's
//! route. Printed as they are, a newline in one of them starts a forged log
//! line and an ESC sequence repaints the operator's terminal. So escaping is
//! done here, once, for every event and span, and no call site can forget
//! it:
//!
//! - `pretty`: the field formatter ([`EscapedFields`]) escapes every value
//!   and message before the line is assembled, so the colours the formatter
//!   adds itself (at a terminal only) survive and those in the data do not.
//! - `json`: serde_json already escapes what JSON requires (below U+0020, `"`
//!   and `\`); the writer ([`JsonEscaping`]) then escapes the rest of the
//!   characters a terminal or a log viewer acts on (DEL, the C1 controls,
//!   line separators, bidirectional overrides) as `\uXXXX`, which keeps the
//!   line valid JSON with the same decoded value.

pub mod otel;

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::{LogFormat, LogSettings, TraceSettings};

/// Installs the global `tracing` subscriber (stderr). `RUST_LOG`, when set,
/// overrides the configured level. With `trace.enabled` (and not
/// `OTEL_SDK_DISABLED`), spans are also exported as OpenTelemetry traces,
/// configured by the process's `OTEL_*` variables; keep the returned
/// pipeline until the end, its drop sends the last spans. Safe to call more
/// than once (the first subscriber stays).
pub fn init(settings: &LogSettings, trace: &TraceSettings) -> Option<otel::Pipeline> {
    // Colour codes only for a person at a terminal, not in docker/CI logs.
    let ansi = std::io::stderr().is_terminal();
    let config = trace
        .enabled
        .then(|| otel::OtelConfig::from_env(std::env::vars()))
        .filter(|c| !c.sdk_disabled);
    let (subscriber, pipeline, problems) =
        subscriber_with_traces(settings, ansi, std::io::stderr, config.as_ref());
    if subscriber.try_init().is_err() {
        return None;
    }
    let mut pipeline = pipeline;
    if let Some(p) = &mut pipeline {
        p.publish_logs_only();
    }
    for problem in problems {
        tracing::warn!("tracing: {problem}");
    }
    if let (Some(c), Some(_)) = (&config, &pipeline) {
        tracing::info!(
            endpoint = %c.traces_endpoint,
            service_name = %c.service_name,
            "exporting OpenTelemetry traces"
        );
    }
    pipeline
}

/// The subscriber [`init`] installs without traces, writing to `writer`.
#[cfg(test)]
fn subscriber<W>(
    settings: &LogSettings,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + Clone + 'static,
{
    subscriber_with_traces(settings, ansi, writer, None).0
}

/// The log subscriber (its filter from `RUST_LOG` or `log.level`) and, with
/// a trace configuration, the OpenTelemetry layer beside it, which sees the
/// `nbserve` spans down to DEBUG (the phases of a request) and no events,
/// except the requests left out by sampling and what is under them
/// ([`otel::sampling::joins_trace`]).
/// Also the pipeline to keep, and the warnings to log once installed.
///
/// Without traces it is the plain `fmt` subscriber with one global filter:
/// per-layer filtering (needed for two layers with different filters) costs
/// every span and event a few registry look-ups, which tracing off must not.
fn subscriber_with_traces<W>(
    settings: &LogSettings,
    ansi: bool,
    writer: W,
    trace: Option<&otel::OtelConfig>,
) -> (
    Box<dyn tracing::Subscriber + Send + Sync>,
    Option<otel::Pipeline>,
    Vec<String>,
)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + Clone + 'static,
{
    let filter = log_filter(settings);
    let Some(config) = trace else {
        return (logs_only(settings, ansi, writer, filter), None, Vec::new());
    };
    let mut problems = config.warnings.clone();
    let (pipeline, traces) = match otel::pipeline(config) {
        // Requests not sampled log through a subscriber of their own (see
        // `otel::sampling`), built like the one without traces.
        Ok((pipeline, traces)) => (
            pipeline.with_logs_only(tracing::Dispatch::new(logs_only(
                settings,
                ansi,
                writer.clone(),
                log_filter(settings),
            ))),
            traces,
        ),
        Err(problem) => {
            problems.push(format!("{problem}; traces are off"));
            return (logs_only(settings, ansi, writer, filter), None, problems);
        }
    };
    let log: Box<dyn Layer<Registry> + Send + Sync> = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(JsonEscaping(writer))
            .with_ansi(false)
            .json()
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            ))
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .fmt_fields(EscapedFields)
            .with_filter(filter)
            .boxed(),
    };
    let spans_only = tracing_subscriber::filter::dynamic_filter_fn(otel::sampling::joins_trace)
        .with_callsite_filter(otel::sampling::callsite_interest);
    let subscriber = Registry::default()
        .with(log)
        .with(traces.with_filter(spans_only));
    (Box::new(subscriber), Some(pipeline), problems)
}

/// The log filter: `RUST_LOG` when set and valid, else `log.level`, else `info`.
fn log_filter(settings: &LogSettings) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The `fmt` subscriber alone, `filter` global.
fn logs_only<W>(
    settings: &LogSettings,
    ansi: bool,
    writer: W,
    filter: EnvFilter,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match settings.format {
        LogFormat::Json => Box::new(
            builder
                .with_writer(JsonEscaping(writer))
                .with_ansi(false)
                .json()
                .flatten_event(true)
                .finish(),
        ),
        LogFormat::Pretty => Box::new(
            builder
                .with_writer(writer)
                .with_ansi(ansi)
                .fmt_fields(EscapedFields)
                .finish(),
        ),
    }
}

/// The `json` event format plus the OpenTelemetry `trace_id` and `span_id`
/// of the current span, when there is one, as top-level fields: a log line
/// leads to its trace.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = ctx.lookup_current().and_then(|span| {
            let extensions = span.extensions();
            let data = extensions.get::<tracing_opentelemetry::OtelData>()?;
            Some((data.trace_id()?, data.span_id()?))
        });
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The json format writes one object and a newline: the ids go
        // before its closing brace.
        let body = line.trim_end_matches('\n');
        match body.strip_suffix('}') {
            Some(open) => writeln!(
                writer,
                "{open},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}

/// Whether `c` is escaped in log output: the control characters (C0, DEL,
/// C1), the Unicode line and paragraph separators some viewers break lines
/// at, and the bidirectional embeddings, overrides and isolates that make a
/// line display in another order than it reads.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `s` is all printable ASCII (space to `~`): nothing in it
/// [`needs_escape`].
fn is_printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// A `fmt::Write` that escapes what [`needs_escape`] on its way through:
/// `\n`, `\r`, `\t`, else `\u{1b}` (Rust's own notation for them).
struct Escaping<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Printable ASCII, nearly every value, passes as it is: checked a
        // byte at a time, without decoding characters.
        if is_printable_ascii(s) {
            return self.0.write_str(s);
        }
        let mut rest = s;
        while let Some(i) = rest.find(needs_escape) {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                _ => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// The `pretty` field formatter: the layout of tracing-subscriber's default
/// (the message as text, then `name=value`, string values quoted), each
/// value escaped.
struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapingVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Self::Visitor {
        EscapingVisitor {
            writer: Staged {
                writer,
                buf: [0; STAGED],
                len: 0,
            },
            first: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's or span's fields for [`EscapedFields`].
struct EscapingVisitor<'a> {
    writer: Staged<'a>,
    first: bool,
    result: fmt::Result,
}

/// Bytes [`Staged`] gathers before handing them on.
const STAGED: usize = 256;

/// A `fmt::Write` that gathers what is written on the stack and hands it to
/// `writer` in one piece. A span's fields are formatted into a fresh
/// `String`: written to a few bytes at a time, it grew, and was copied,
/// several times for every request's span.
struct Staged<'a> {
    writer: Writer<'a>,
    buf: [u8; STAGED],
    len: usize,
}

impl Staged<'_> {
    fn has_ansi_escapes(&self) -> bool {
        self.writer.has_ansi_escapes()
    }

    /// Hands on what is gathered.
    fn flush(&mut self) -> fmt::Result {
        let Self { writer, buf, len } = self;
        if *len == 0 {
            return Ok(());
        }
        let staged = std::str::from_utf8(&buf[..*len]).expect("only whole `str`s are gathered");
        *len = 0;
        writer.write_str(staged)
    }
}

impl fmt::Write for Staged<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > STAGED {
            self.flush()?;
            if s.len() > STAGED {
                return self.writer.write_str(s);
            }
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

impl Drop for Staged<'_> {
    /// Nothing gathered is lost, even by a caller that never `finish`es.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        // Metadata of `log` records, already shown as the line's target.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = self.write_field(name, value);
    }

    fn write_field(&mut self, name: &str, value: fmt::Arguments<'_>) -> fmt::Result {
        self.write_name(name)?;
        Escaping(&mut self.writer).write_fmt(value)
    }

    /// The separator and `name=` (nothing for the message).
    fn write_name(&mut self, name: &str) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.writer.has_ansi_escapes() {
                // Italic name, dimmed `=`: the default formatter's style.
                write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
            } else {
                self.writer.write_str(name)?;
                self.writer.write_char('=')?;
            }
        }
        Ok(())
    }

    /// A string field as `{value:?}` writes it, for the common value that
    /// `Debug` leaves as it is (printable ASCII without `"` or `\`), quoted,
    /// without going through `fmt`: route templates, methods, ids.
    fn write_quoted(&mut self, field: &Field, value: &str) -> bool {
        // One pass over the bytes: a `char` pattern would decode each one.
        let plain = value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
        let name = field.name();
        if !plain || self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        self.result = self.write_name(name).and_then(|()| {
            self.writer.write_char('"')?;
            self.writer.write_str(value)?;
            self.writer.write_char('"')
        });
        true
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else if !self.write_quoted(field, value) {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut sources = String::new();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(sources, ": {s}");
            source = s.source();
        }
        self.write(field, format_args!("{value}{sources}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(mut self) -> fmt::Result {
        let flushed = self.writer.flush();
        self.result.and(flushed)
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        // Whoever writes directly writes after what is gathered.
        if let Err(e) = self.writer.flush() {
            self.result = Err(e);
        }
        &mut self.writer.writer
    }
}

/// Wraps the `json` format's writer: each event arrives as one complete
/// line, and every character [`needs_escape`] inside it becomes a JSON
/// `\uXXXX` escape (valid only inside strings, which is the only place JSON
/// lets such characters be). The line's own final newline is kept.
struct JsonEscaping<W>(W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for JsonEscaping<W> {
    type Writer = JsonEscapingWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonEscapingWriter(self.0.make_writer())
    }
}

/// The writer [`JsonEscaping`] makes.
struct JsonEscapingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for JsonEscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        if !body.contains(needs_escape) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = String::with_capacity(buf.len() + 16);
        for c in body.chars() {
            if needs_escape(c) {
                // Every such character is in the Basic Multilingual Plane.
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                out.push(c);
            }
        }
        out.push_str(newline);
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    const FORGED: &str = "evil\n2026-01-01T00:00:00Z  INFO forged\x1b[31m\u{9b}2J\u{202e}";

    /// The log of one warning with hostile text in each kind of field,
    /// inside a span with one too.
    fn log(format: LogFormat, ansi: bool) -> String {
        let buffer = Buffer::default();
        let settings = LogSettings {
            format,
            level: "info".into(),
        };
        let error = std::io::Error::other(FORGED);
        tracing::subscriber::with_default(subscriber(&settings, ansi, buffer.clone()), || {
            let span = tracing::info_span!("request", route = %FORGED);
            let _in = span.enter();
            tracing::warn!(
                model = %FORGED,
                version = FORGED,
                debug = ?FORGED,
                error = &error as &(dyn std::error::Error + 'static),
                "loaded {FORGED}"
            );
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn pretty_lines_escape_every_field_and_the_message() {
        let out = log(LogFormat::Pretty, false);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            !out.trim_end_matches('\n').contains(needs_escape),
            "{out:?}"
        );
        assert!(
            out.contains(
                r"model=evil\n2026-01-01T00:00:00Z  INFO forged\u{1b}[31m\u{9b}2J\u{202e}"
            ),
            "{out}"
        );
        assert!(out.contains(r"loaded evil\n2026"), "{out}");
        assert!(out.contains(r#"version="evil\n2026"#), "{out}");
        assert!(out.contains(r"request{route=evil\n2026"), "{out}");
    }

    /// What `f` logs through the `pretty` format at level info.
    fn pretty_info(f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let settings = LogSettings {
            format: LogFormat::Pretty,
            level: "info".into(),
        };
        tracing::subscriber::with_default(subscriber(&settings, false, buffer.clone()), f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn fields_longer_than_the_stage_are_written_whole_and_in_order() {
        let long = "x".repeat(STAGED + 44);
        let near = "y".repeat(STAGED - 20);
        let out = pretty_info(|| {
            let span = tracing::info_span!("request", a = %near, b = %long, c = 7);
            let _in = span.enter();
            tracing::warn!(d = %near, e = "tail\n", "done");
        });
        assert!(
            out.contains(&format!("request{{a={near} b={long} c=7}}")),
            "{out}"
        );
        assert!(
            out.contains(&format!(r#"done d={near} e="tail\n""#)),
            "{out}"
        );
    }

    #[test]
    fn plain_strings_are_written_as_their_debug_form() {
        let out = pretty_info(|| {
            let span = tracing::info_span!("request", method = %"POST", route = "/predict", request_id = %"r-1");
            let _in = span.enter();
            tracing::warn!(quote = "it's", empty = "", both = "a\"b\\c", "done");
        });
        assert!(
            out.contains(r#"request{method=POST route="/predict" request_id=r-1}"#),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "done quote={:?} empty={:?} both={:?}",
                "it's", "", "a\"b\\c"
            )),
            "{out}"
        );
    }

    #[test]
    fn pretty_keeps_its_own_colours_at_a_terminal_only() {
        let out = log(LogFormat::Pretty, true);
        assert_eq!(out.lines().count(), 1, "{out}");
        // The formatter's own colours are there; the field's ESC is not.
        assert!(out.contains("\x1b[3mmodel\x1b[0m"), "{out:?}");
        assert!(out.contains(r"forged\u{1b}[31m"), "{out:?}");
        assert!(!out.contains("\x1b[31m"), "{out:?}");
        assert!(!out.contains('\u{9b}'), "{out:?}");
    }

    #[test]
    fn json_lines_hold_no_raw_control_character_and_decode_unchanged() {
        let out = log(LogFormat::Json, false);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(
            !out.trim_end_matches('\n').contains(needs_escape),
            "{out:?}"
        );
        let line: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(line["model"], FORGED);
        assert_eq!(line["version"], FORGED);
        assert_eq!(line["message"], format!("loaded {FORGED}"));
        assert_eq!(line["span"]["route"], FORGED);
    }

    #[test]
    fn plain_text_passes_unchanged() {
        let mut out = String::new();
        Escaping(&mut out)
            .write_str("model spam-nb 2026.11.30 ünïcode ✓")
            .unwrap();
        assert_eq!(out, "model spam-nb 2026.11.30 ünïcode ✓");
    }
}
