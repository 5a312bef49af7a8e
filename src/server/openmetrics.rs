//! The OpenMetrics 1.0 text exposition of the gathered metrics, with
//! exemplars, and the `Accept` negotiation that chooses it.
//!
//! Hand-written because no maintained crate fits: the `prometheus` crate
//! (0.14) encodes only the classic text format and has no exemplars, and
//! `prometheus-client`, which has both, has its own registry and metric
//! types, so using it would mean porting every metric and every test that
//! reads one. The format is small and this encoder works on the same
//! gathered [`MetricFamily`] values as the classic encoder, so the two
//! expositions always hold the same series with the same labels (`le`
//! values included, written as the classic encoder writes them, so a
//! scraper switching format keeps its series).

use std::fmt::Write as _;

use prometheus::proto::{Metric, MetricFamily, MetricType};

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One exemplar: a trace that had this value, seen at this time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The W3C trace id (written as 32 lowercase hex digits).
    pub trace_id: u128,
    /// The observed value (a latency in seconds).
    pub value: f64,
    /// When it was observed, Unix seconds.
    pub timestamp: f64,
}

/// Whether a scrape's `Accept` header prefers OpenMetrics to the classic
/// text format: `application/openmetrics-text` with a quality above zero and
/// no lower than the best of `text/plain`, `text/*` and `*/*`. Prometheus
/// sends `application/openmetrics-text;version=1.0.0,…;q=0.75,
/// text/plain;version=0.0.4;q=0.5,*/*;q=0.1`; no header, or anything else,
/// keeps the classic format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut quality = 1.0;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    quality = v.trim().parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
        }
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
            "text/plain" | "text/*" | "*/*" => text = text.max(quality),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// The OpenMetrics text of `families`, ending in `# EOF`. `exemplar(family,
/// metric, bucket)` gives the exemplar of a histogram bucket (its index in
/// the metric's buckets; the `+Inf` bucket is the last), if any.
pub fn encode(
    families: &[MetricFamily],
    exemplar: impl Fn(&MetricFamily, &Metric, usize) -> Option<Exemplar>,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for family in families {
        let kind = family.get_field_type();
        let name = family.name();
        // A counter's family is named without `_total`; its sample has it.
        let base = match kind {
            MetricType::COUNTER => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let type_name = match kind {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        let _ = writeln!(out, "# TYPE {base} {type_name}");
        if !family.help().is_empty() {
            let _ = writeln!(out, "# HELP {base} {}", Escaped(family.help()));
        }
        for metric in family.get_metric() {
            let sample = Sample {
                metric,
                timestamp_ms: metric.timestamp_ms(),
            };
            match kind {
                MetricType::COUNTER => {
                    let value = metric.get_counter().value();
                    sample.write(&mut out, base, "_total", None, Number::Float(value), None);
                }
                MetricType::GAUGE => {
                    let value = metric.get_gauge().value();
                    sample.write(&mut out, base, "", None, Number::Float(value), None);
                }
                MetricType::UNTYPED => {
                    let value = metric.untyped.value();
                    sample.write(&mut out, base, "", None, Number::Float(value), None);
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let mut has_inf = false;
                    let buckets = h.get_bucket();
                    for (i, b) in buckets.iter().enumerate() {
                        let bound = b.upper_bound();
                        has_inf |= bound == f64::INFINITY;
                        let le = ("le", Bound(bound).to_string());
                        let count = Number::Int(b.cumulative_count());
                        let ex = exemplar(family, metric, i);
                        sample.write(&mut out, base, "_bucket", Some(le), count, ex);
                    }
                    if !has_inf {
                        // OpenMetrics requires the `+Inf` bucket; the
                        // prometheus crate leaves it implicit.
                        let le = ("le", "+Inf".to_owned());
                        let count = Number::Int(h.get_sample_count());
                        let ex = exemplar(family, metric, buckets.len());
                        sample.write(&mut out, base, "_bucket", Some(le), count, ex);
                    }
                    let sum = Number::Float(h.get_sample_sum());
                    let count = Number::Int(h.get_sample_count());
                    sample.write(&mut out, base, "_sum", None, sum, None);
                    sample.write(&mut out, base, "_count", None, count, None);
                }
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    for q in s.get_quantile() {
                        let label = ("quantile", Bound(q.quantile()).to_string());
                        let value = Number::Float(q.value());
                        sample.write(&mut out, base, "", Some(label), value, None);
                    }
                    let sum = Number::Float(s.sample_sum());
                    let count = Number::Int(s.sample_count());
                    sample.write(&mut out, base, "_sum", None, sum, None);
                    sample.write(&mut out, base, "_count", None, count, None);
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A sample value: counts as integers, everything else as a float.
enum Number {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Number::Int(n) => write!(f, "{n}"),
            Number::Float(v) if v.is_nan() => f.write_str("NaN"),
            Number::Float(v) if v == f64::INFINITY => f.write_str("+Inf"),
            Number::Float(v) if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            Number::Float(v) => write!(f, "{v}"),
        }
    }
}

/// A bucket bound or quantile as a label value, written as the classic
/// encoder writes it (`0.005`, `1`, `+Inf`).
struct Bound(f64);

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == f64::INFINITY {
            f.write_str("+Inf")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// One metric's labels and timestamp, shared by the samples written for it.
struct Sample<'a> {
    metric: &'a Metric,
    timestamp_ms: i64,
}

impl Sample<'_> {
    fn write(
        &self,
        out: &mut String,
        base: &str,
        suffix: &str,
        extra: Option<(&str, String)>,
        value: Number,
        exemplar: Option<Exemplar>,
    ) {
        out.push_str(base);
        out.push_str(suffix);
        let labels = self.metric.get_label();
        if !labels.is_empty() || extra.is_some() {
            let mut separator = '{';
            let pairs = labels.iter().map(|l| (l.name(), l.value()));
            let extra = extra.as_ref().map(|(k, v)| (*k, v.as_str()));
            for (k, v) in pairs.chain(extra) {
                let _ = write!(out, "{separator}{k}=\"{}\"", Escaped(v));
                separator = ',';
            }
            out.push('}');
        }
        let _ = write!(out, " {value}");
        if self.timestamp_ms != 0 {
            let _ = write!(out, " {}", self.timestamp_ms as f64 / 1000.0);
        }
        if let Some(e) = exemplar {
            let _ = write!(
                out,
                " # {{trace_id=\"{:032x}\"}} {} {}",
                e.trace_id,
                Number::Float(e.value),
                e.timestamp
            );
        }
        out.push('\n');
    }
}

/// A label value or help text with `\`, `"` and newlines escaped.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

    use super::*;

    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn prometheus_gets_openmetrics_and_other_scrapers_the_classic_format() {
        assert!(wants_openmetrics(Some(PROMETHEUS_ACCEPT)));
        assert!(wants_openmetrics(Some("application/openmetrics-text")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/json")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=0.2, text/plain"
        )));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=x")));
    }

    fn registry() -> (Registry, HistogramVec) {
        let r = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("t_requests_total", "Requests \"served\"\nby route\\."),
            &["route"],
        )
        .unwrap();
        requests.with_label_values(&["/a\"b\\c\nd"]).inc_by(3);
        let latency = HistogramVec::new(
            HistogramOpts::new("t_seconds", "Latency.").buckets(vec![0.005, 1.0]),
            &["route"],
        )
        .unwrap();
        latency.with_label_values(&["/p"]).observe(0.004);
        latency.with_label_values(&["/p"]).observe(2.0);
        let up = IntGauge::new("t_up", "Up.").unwrap();
        up.set(1);
        r.register(Box::new(requests)).unwrap();
        r.register(Box::new(latency.clone())).unwrap();
        r.register(Box::new(up)).unwrap();
        (r, latency)
    }

    #[test]
    fn every_kind_is_written_as_openmetrics_with_its_exemplars() {
        let (r, _) = registry();
        let text = encode(&r.gather(), |family, metric, bucket| {
            let route = metric.get_label()[0].value();
            (family.name() == "t_seconds" && route == "/p" && bucket != 1).then_some(Exemplar {
                trace_id: 0x0af7651916cd43dd8448eb211c80319c,
                value: if bucket == 0 { 0.004 } else { 2.0 },
                timestamp: 1_700_000_000.5,
            })
        });
        let expected = "\
# TYPE t_requests counter
# HELP t_requests Requests \\\"served\\\"\\nby route\\\\.
t_requests_total{route=\"/a\\\"b\\\\c\\nd\"} 3
# TYPE t_seconds histogram
# HELP t_seconds Latency.
t_seconds_bucket{route=\"/p\",le=\"0.005\"} 1 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 0.004 1700000000.5
t_seconds_bucket{route=\"/p\",le=\"1\"} 1
t_seconds_bucket{route=\"/p\",le=\"+Inf\"} 2 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 2 1700000000.5
t_seconds_sum{route=\"/p\"} 2.004
t_seconds_count{route=\"/p\"} 2
# TYPE t_up gauge
# HELP t_up Up.
t_up 1
# EOF
";
        assert_eq!(text, expected);
    }

    #[test]
    fn special_values_use_the_openmetrics_spelling() {
        assert_eq!(Number::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Number::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Number::Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Number::Float(0.25).to_string(), "0.25");
        assert_eq!(Bound(f64::INFINITY).to_string(), "+Inf");
    }
}
