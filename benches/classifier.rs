//! In-process speed of the classifier on real documents.
//!
//!   cargo bench --bench classifier
//!
//! Documents come from `data/spamassassin.csv` (run `scripts/fetch-data.sh`
//! to create it); without it the committed `tests/data/sample.csv` is used.
//! The document set is chosen exactly like `bench/sklearn_inprocess.py`
//! chooses it (evenly spaced rows, in file order), so `bench/inprocess.sh`
//! can compare the two. Each workload is measured twice, once reporting
//! bytes/s and once documents/s.
//!
//! `NBSERVE_BENCH_DOCS` (default 1000) sets the batch size and
//! `NBSERVE_BENCH_MODEL` (default `models/spam-nb.json`) the artifact, e.g. to
//! compare vocabulary sizes.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nbserve::{Artifact, Dataset};

const MODEL: &str = "models/spam-nb.json";
const FULL: &str = "data/spamassassin.csv";
const SAMPLE: &str = "tests/data/sample.csv";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `n` evenly spaced documents (row `i * len / n`), the batch the Python side also times.
fn documents(n: usize) -> Vec<String> {
    let full = root().join(FULL);
    let path = if full.exists() {
        full
    } else {
        eprintln!(
            "bench: {FULL} is missing (run scripts/fetch-data.sh for the full corpus); \
             falling back to {SAMPLE}"
        );
        root().join(SAMPLE)
    };
    let data = Dataset::from_csv(&path, "text", "label").expect("benchmark dataset");
    let n = n.min(data.len());
    let docs: Vec<String> = (0..n)
        .map(|i| data.texts[i * data.len() / n].clone())
        .collect();
    let bytes: usize = docs.iter().map(String::len).sum();
    eprintln!(
        "bench: {} documents, {bytes} bytes from {}",
        docs.len(),
        path.display()
    );
    docs
}

fn batch_size() -> usize {
    std::env::var("NBSERVE_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn benches(c: &mut Criterion) {
    let model_path = root().join(std::env::var("NBSERVE_BENCH_MODEL").unwrap_or(MODEL.into()));
    let classifier = Artifact::load(&model_path)
        .unwrap_or_else(|e| panic!("{}: {e}", model_path.display()))
        .classifier;
    eprintln!(
        "bench: model {} ({} terms)",
        model_path.display(),
        classifier.vocabulary().len()
    );
    let docs = documents(batch_size());
    let batch_bytes: u64 = docs.iter().map(|d| d.len() as u64).sum();

    // One document of median length: what a typical /predict request carries.
    let mut by_len: Vec<&String> = docs.iter().collect();
    by_len.sort_by_key(|d| d.len());
    let one = by_len[by_len.len() / 2].as_str();

    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(one.len() as u64)),
        ("docs", Throughput::Elements(1)),
    ] {
        let mut g = c.benchmark_group(format!("predict_one_{unit}"));
        g.throughput(throughput);
        g.bench_function("median_document", |b| {
            b.iter(|| classifier.predict(black_box(one)))
        });
        g.finish();
    }

    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(batch_bytes)),
        ("docs", Throughput::Elements(docs.len() as u64)),
    ] {
        let mut g = c.benchmark_group(format!("predict_batch_{unit}"));
        g.throughput(throughput);
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(8));
        g.bench_function(format!("{}_documents", docs.len()), |b| {
            b.iter(|| classifier.predict_batch(black_box(&docs)))
        });
        g.finish();
    }

    let model_bytes = std::fs::metadata(&model_path).expect("model file").len();
    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(model_bytes)),
        ("files", Throughput::Elements(1)),
    ] {
        let mut g = c.benchmark_group(format!("artifact_load_{unit}"));
        g.throughput(throughput);
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(8));
        g.bench_function("spam_nb_json", |b| {
            b.iter(|| Artifact::load(black_box(Path::new(&model_path))).expect("loads"))
        });
        g.finish();
    }
}

criterion_group!(classifier, benches);
criterion_main!(classifier);
