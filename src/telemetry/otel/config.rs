//! The standard `OTEL_*` variables, read into a typed configuration.
//!
//! Parsed here from an explicit environment (tests pass their own), not by
//! the SDK from the process's, so every value is checked in one place and a
//! bad one is a warning naming the variable plus the specification's
//! default, never a refused start: tracing is an aid, not a dependency.

use std::time::Duration;

/// The OTLP/HTTP port of a collector on the same host (the specification's
/// default endpoint).
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// How spans are chosen for export (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This share of traces, by trace id (0 … 1).
    Ratio(f64),
}

/// The sampler: a decision for traces that start here, and whether a
/// caller's decision (the `traceparent` sampled flag) is followed instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Follow the parent's decision when there is one (`parentbased_*`).
    pub parent_based: bool,
    /// The decision for root spans (all spans when not parent-based).
    pub root: Sampling,
}

/// The batch exporter's bounds (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// Spans waiting for export; beyond it new spans are dropped (counted).
    pub max_queue_size: usize,
    /// Spans sent in one request.
    pub max_export_batch_size: usize,
    /// Longest a span waits before its batch is sent.
    pub schedule_delay: Duration,
}

/// Everything the trace pipeline is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// The full URL spans are POSTed to (`…/v1/traces`).
    pub traces_endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Further resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), decoded.
    pub resource: Vec<(String, String)>,
    /// Which spans are exported.
    pub sampler: SamplerConfig,
    /// The exporter's queue and batches.
    pub batch: BatchConfig,
    /// Values that were ignored, each naming its variable.
    pub warnings: Vec<String>,
    /// `OTEL_SDK_DISABLED=true`: no export, whatever the settings say.
    pub sdk_disabled: bool,
}

impl OtelConfig {
    /// The configuration from `env` (`OTEL_*` pairs; others ignored).
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, v)| k.starts_with("OTEL_") && !v.trim().is_empty())
            .collect();
        let get = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
        };
        let mut warnings = Vec::new();

        let traces_endpoint = match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            // The signal's own variable is used as it is.
            Some(url) => url.to_owned(),
            // The base one gets the signal's path appended.
            None => format!(
                "{}/v1/traces",
                get("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .unwrap_or(DEFAULT_ENDPOINT)
                    .trim_end_matches('/')
            ),
        };
        for name in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            if let Some(p) = get(name).filter(|p| *p != "http/protobuf") {
                warnings.push(format!(
                    "{name}={p} is not supported; spans are sent as http/protobuf"
                ));
            }
        }

        let mut resource = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => parse_resource_attributes(list, &mut warnings),
            None => Vec::new(),
        };
        let service_name = get("OTEL_SERVICE_NAME")
            .map(str::to_owned)
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "nbserve".to_owned());
        resource.retain(|(k, _)| k != "service.name");

        let sampler = parse_sampler(
            get("OTEL_TRACES_SAMPLER"),
            get("OTEL_TRACES_SAMPLER_ARG"),
            &mut warnings,
        );

        let mut number = |name: &str, default: u64| match get(name) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    warnings.push(format!(
                        "{name}={v} is not a positive integer; using {default}"
                    ));
                    default
                }
            },
        };
        let max_queue_size = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048) as usize;
        let max_export_batch_size = (number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512) as usize)
            // A batch larger than the queue could never fill.
            .min(max_queue_size);
        let schedule_delay = Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000));

        let sdk_disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        OtelConfig {
            traces_endpoint,
            service_name,
            resource,
            sampler,
            batch: BatchConfig {
                max_queue_size,
                max_export_batch_size,
                schedule_delay,
            },
            warnings,
            sdk_disabled,
        }
    }
}

/// `OTEL_TRACES_SAMPLER` and its argument; the default is
/// `parentbased_always_on`, and so is the sampler of an unknown name.
fn parse_sampler(
    name: Option<&str>,
    arg: Option<&str>,
    warnings: &mut Vec<String>,
) -> SamplerConfig {
    let ratio = |warnings: &mut Vec<String>| match arg.map(|a| (a, a.parse::<f64>())) {
        None => Sampling::Ratio(1.0),
        Some((_, Ok(r))) if (0.0..=1.0).contains(&r) => Sampling::Ratio(r),
        Some((a, _)) => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER_ARG={a} is not a number within [0, 1]; using 1.0"
            ));
            Sampling::Ratio(1.0)
        }
    };
    let (parent_based, root) = match name.unwrap_or("parentbased_always_on") {
        "always_on" => (false, Sampling::AlwaysOn),
        "always_off" => (false, Sampling::AlwaysOff),
        "traceidratio" => (false, ratio(warnings)),
        "parentbased_always_on" => (true, Sampling::AlwaysOn),
        "parentbased_always_off" => (true, Sampling::AlwaysOff),
        "parentbased_traceidratio" => (true, ratio(warnings)),
        other => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER={other} is not supported; using parentbased_always_on"
            ));
            (true, Sampling::AlwaysOn)
        }
    };
    SamplerConfig { parent_based, root }
}

/// `key1=value1,key2=value2`, values percent-encoded (the W3C Baggage
/// octet rules). A member without `=` or with an empty key is skipped with a
/// warning; the others are kept.
fn parse_resource_attributes(list: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for member in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        match member.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((k.trim().to_owned(), percent_decode(v.trim())));
            }
            _ => warnings.push(format!(
                "OTEL_RESOURCE_ATTRIBUTES: ignored {member:?} (not key=value)"
            )),
        }
    }
    out
}

/// `%XX` escapes decoded; an invalid escape is kept as it is, and bytes that
/// do not form UTF-8 are replaced.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> OtelConfig {
        OtelConfig::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_follow_the_specification() {
        let c = config(&[("PATH", "/bin")]);
        assert_eq!(c.traces_endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(c.service_name, "nbserve");
        assert!(c.resource.is_empty());
        let parent_on = SamplerConfig {
            parent_based: true,
            root: Sampling::AlwaysOn,
        };
        assert_eq!(c.sampler, parent_on);
        assert_eq!(c.batch.max_queue_size, 2048);
        assert_eq!(c.batch.max_export_batch_size, 512);
        assert_eq!(c.batch.schedule_delay, Duration::from_secs(5));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(!c.sdk_disabled);
    }

    #[test]
    fn the_base_endpoint_gets_the_signal_path_the_traces_one_does_not() {
        let base = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(base.traces_endpoint, "http://collector:4318/v1/traces");
        let both = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:9999/custom",
            ),
        ]);
        assert_eq!(both.traces_endpoint, "http://other:9999/custom");
    }

    #[test]
    fn samplers_and_their_argument() {
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ]);
        assert_eq!(c.sampler.root, Sampling::Ratio(0.01));
        assert!(!c.sampler.parent_based);
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ]);
        assert_eq!(c.sampler.root, Sampling::Ratio(0.0));
        assert!(c.sampler.parent_based);
        let c = config(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert_eq!(c.sampler.root, Sampling::AlwaysOff);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn bad_values_warn_and_fall_back_to_the_defaults() {
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(c.sampler.root, Sampling::AlwaysOn);
        assert_eq!(c.batch.max_queue_size, 2048);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"));
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ]);
        assert_eq!(c.sampler.root, Sampling::Ratio(1.0));
        assert!(c.warnings[0].contains("OTEL_TRACES_SAMPLER_ARG=1.5"));
    }

    #[test]
    fn resource_attributes_are_decoded_and_the_service_name_variable_wins() {
        let c = config(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs, deployment.environment=prod,team=ml%20ops%2Cnb,broken,=x",
        )]);
        assert_eq!(c.service_name, "from-attrs");
        assert_eq!(
            c.resource,
            vec![
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "ml ops,nb".to_owned()),
            ]
        );
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        let c = config(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "spam-filter"),
        ]);
        assert_eq!(c.service_name, "spam-filter");
        assert!(c.resource.is_empty());
    }

    #[test]
    fn batch_bounds_and_the_kill_switch() {
        let c = config(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]);
        assert_eq!(c.batch.max_queue_size, 100);
        assert_eq!(c.batch.max_export_batch_size, 100);
        assert_eq!(c.batch.schedule_delay, Duration::from_millis(200));
        assert!(c.sdk_disabled);
    }

    #[test]
    fn invalid_percent_escapes_are_kept() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
