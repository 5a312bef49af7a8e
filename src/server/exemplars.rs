//! The request-latency histogram's exemplars: for each series and bucket,
//! the last sampled request's trace id, latency and time.
//!
//! Bounded: one slot per bucket of each `(method, route, model)` series,
//! and those label values come from a bounded set (route templates, eight
//! method labels, the repository's model names). Written on the request
//! path only for a request whose span is sampled (tracing off or a request
//! not sampled touches nothing here); read by an OpenMetrics scrape.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::proto::{Metric, MetricFamily};

use super::openmetrics::Exemplar;

/// One series' exemplars, one per bucket (the last is `+Inf`).
pub(crate) struct Slots {
    bounds: &'static [f64],
    cells: Mutex<Box<[Option<Exemplar>]>>,
}

impl Slots {
    /// Keeps `trace_id` as the exemplar of the bucket `seconds` falls in.
    pub(crate) fn record(&self, seconds: f64, trace_id: u128) {
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(self.bounds.len());
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1000.0);
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells[bucket] = Some(Exemplar {
            trace_id,
            value: seconds,
            timestamp,
        });
    }
}

/// A series' labels: method, route, model.
type SeriesLabels = [Box<str>; 3];

/// Every series' [`Slots`], by its labels.
pub(crate) struct LatencyExemplars {
    /// The family the exemplars belong to.
    family: &'static str,
    bounds: &'static [f64],
    series: Mutex<Vec<(SeriesLabels, Arc<Slots>)>>,
}

impl LatencyExemplars {
    /// An empty store for the histogram `family` with these bucket bounds.
    pub(crate) fn new(family: &'static str, bounds: &'static [f64]) -> Self {
        Self {
            family,
            bounds,
            series: Mutex::new(Vec::new()),
        }
    }

    /// The slots of one series, made on first use (once per series, when the
    /// edge first resolves it).
    pub(crate) fn slots(&self, method: &str, route: &str, model: &str) -> Arc<Slots> {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, slots)) = series
            .iter()
            .find(|(l, _)| (&*l[0], &*l[1], &*l[2]) == (method, route, model))
        {
            return Arc::clone(slots);
        }
        let slots = Arc::new(Slots {
            bounds: self.bounds,
            cells: Mutex::new(vec![None; self.bounds.len() + 1].into_boxed_slice()),
        });
        series.push((
            [method.into(), route.into(), model.into()],
            Arc::clone(&slots),
        ));
        slots
    }

    /// A copy of the exemplars, as the OpenMetrics encoder asks for them.
    pub(crate) fn snapshot(&self) -> impl Fn(&MetricFamily, &Metric, usize) -> Option<Exemplar> {
        let family = self.family;
        let series: Vec<(SeriesLabels, Box<[Option<Exemplar>]>)> = self
            .series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(labels, slots)| {
                let cells = slots.cells.lock().unwrap_or_else(|e| e.into_inner());
                (labels.clone(), cells.clone())
            })
            .collect();
        move |f: &MetricFamily, m: &Metric, bucket: usize| {
            if f.name() != family {
                return None;
            }
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map_or("", |l| l.value())
            };
            let wanted = (label("method"), label("route"), label("model"));
            let (_, cells) = series
                .iter()
                .find(|(l, _)| (&*l[0], &*l[1], &*l[2]) == wanted)?;
            *cells.get(bucket)?
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{HistogramOpts, HistogramVec};

    use super::*;

    const BOUNDS: &[f64] = &[0.001, 0.01];

    #[test]
    fn each_bucket_keeps_its_last_sampled_trace() {
        let store = LatencyExemplars::new("t_seconds", BOUNDS);
        let slots = store.slots("POST", "/predict", "m");
        assert!(Arc::ptr_eq(&slots, &store.slots("POST", "/predict", "m")));
        slots.record(0.0005, 1);
        slots.record(0.0008, 2);
        slots.record(0.01, 3);
        slots.record(7.0, 4);
        store.slots("GET", "/health", "").record(0.0001, 5);

        let h = HistogramVec::new(
            HistogramOpts::new("t_seconds", "h").buckets(BOUNDS.to_vec()),
            &["method", "route", "model"],
        )
        .unwrap();
        h.with_label_values(&["POST", "/predict", "m"]).observe(0.1);
        h.with_label_values(&["GET", "/other", ""]).observe(0.1);
        let families = prometheus::core::Collector::collect(&h);
        let (family, metrics) = (&families[0], families[0].get_metric());
        let lookup = store.snapshot();
        let trace = |m: &Metric, bucket| lookup(family, m, bucket).map(|e| e.trace_id);
        let predict = metrics
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == "/predict"))
            .unwrap();
        assert_eq!(
            (0..3).map(|b| trace(predict, b)).collect::<Vec<_>>(),
            [Some(2), Some(3), Some(4)]
        );
        let e = lookup(family, predict, 0).unwrap();
        assert_eq!(e.value, 0.0008);
        assert!(e.timestamp > 1.6e9);
        // A series never sampled, and another family, have none.
        let other = metrics.iter().find(|m| !std::ptr::eq(*m, predict)).unwrap();
        assert_eq!(trace(other, 0), None);
        let mut renamed = family.clone();
        renamed.set_name("other".into());
        assert_eq!(lookup(&renamed, predict, 0), None);
    }
}
