//! Cross-validation on a tokenized training part: the engine of `nbserve
//! tune` and of the out-of-fold temperature calibration that `tune` and
//! `train --calibrate` share (the pipelines themselves are in `training`).
//!
//! The training part is tokenized once: every fold's vocabulary and counts,
//! for any `min_df` / `max_df` / `max_features` / `alpha` / model, follow
//! from per-term document and occurrence counts of the fold's documents
//! ([`TermStats`]), so a grid of points costs one tokenization plus cheap
//! counting, not one `CountVectorizer.fit` per point and fold.

pub mod counts;
mod fold;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::artifact::Calibration;
use crate::classifier::params::check_folds;
use crate::classifier::stats::text_hash;
use crate::classifier::{
    calibration, ConfusionMatrix, Counts, CvResult, DfBound, GridPoint, ModelError, NbParameters,
    Param, ParamError, TermCounts, TermStats, TrainParams, VectorizerError, Vocabulary,
};
use crate::dataset::Dataset;

use fold::{cv_results, matrix_figures, FoldModels, FoldScores};

/// Why a cross-validation cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CvError {
    /// A parameter value out of its range, or one this data cannot support
    /// ([`ParamError::by_data`] tells which).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The data cannot be cross-validated as asked.
    #[error("{0}")]
    Data(String),
}

impl CvError {
    /// True for a value out of its range (a usage error), false for data
    /// that cannot support the fit.
    pub fn is_usage(&self) -> bool {
        matches!(self, CvError::Param(p) if !p.by_data)
    }
}

/// How cross-validation assigns training documents to folds.
#[derive(Debug, Clone, PartialEq)]
pub enum FoldRule {
    /// Stratified by class, shuffled by the seed (the default; needs every
    /// document at hand, so counts cannot reproduce it).
    Stratified,
    /// By a hash of the text seeded by the seed
    /// ([`crate::classifier::stats::hash_fold`]): what `count --folds`
    /// does by default, shard by shard.
    Hash,
    /// Given per training document, 0-based (a fold column).
    Given(Vec<u32>),
}

/// A tokenized training part, ready for any number of fits.
pub struct CrossValidation {
    corpus: TermCounts,
    labels: Vec<usize>,
    classes: Vec<String>,
    seed: u64,
    rule: FoldRule,
    /// Per document, the hash its fold is taken from under [`FoldRule::Hash`].
    hashes: Vec<u64>,
}

/// Out-of-fold joint log likelihoods: `oof[point][document]`.
type OutOfFold = Vec<Vec<Vec<f64>>>;

/// One fold's outcome: its scores and, per held-out document, its joint log
/// likelihoods under every point.
type FoldOutcome = Result<(FoldScores, Vec<(usize, Vec<Vec<f64>>)>), CvError>;

impl CrossValidation {
    /// Tokenizes `train` (labels are indices into `classes`); `seed` seeds
    /// the stratified folds.
    pub fn new(
        train: &Dataset,
        classes: &[String],
        seed: u64,
        progress: impl FnMut(usize, usize),
    ) -> Self {
        Self::with_folds(train, classes, seed, FoldRule::Stratified, progress)
    }

    /// [`CrossValidation::new`] with folds assigned by `rule` (a
    /// [`FoldRule::Given`] lists one fold per document of `train`).
    pub fn with_folds(
        train: &Dataset,
        classes: &[String],
        seed: u64,
        rule: FoldRule,
        progress: impl FnMut(usize, usize),
    ) -> Self {
        let labels = train
            .label_indices(classes)
            .expect("classes cover the training labels");
        let hashes = match rule {
            FoldRule::Hash => train.texts.iter().map(|t| text_hash(seed, t)).collect(),
            _ => Vec::new(),
        };
        Self {
            corpus: TermCounts::tokenize(&train.texts, progress),
            labels,
            classes: classes.to_vec(),
            seed,
            rule,
            hashes,
        }
    }

    /// Checks every point's values against their ranges and the size of
    /// the training part.
    pub fn check_points(&self, points: &[GridPoint]) -> Result<(), CvError> {
        check_points(points, self.corpus.len())
    }

    /// Seeded stratified folds: `fold_of[document]`.
    fn folds(&self, k: u32) -> Result<Vec<usize>, CvError> {
        check_folds(k)?;
        match &self.rule {
            FoldRule::Stratified => {}
            FoldRule::Hash => {
                return Ok(self
                    .hashes
                    .iter()
                    .map(|h| (h % u64::from(k)) as usize)
                    .collect())
            }
            FoldRule::Given(folds) => {
                return match folds.iter().find(|&&f| f >= k) {
                    Some(&f) => Err(ParamError::by_data(
                        Param::Folds,
                        k,
                        format!("is not more than fold {f} of the fold column (folds are 0-based)"),
                    )
                    .into()),
                    None => Ok(folds.iter().map(|&f| f as usize).collect()),
                }
            }
        }
        let k = k as usize;
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes.len()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l].push(i);
        }
        if let Some((c, members)) = by_class
            .iter()
            .enumerate()
            .find(|(_, m)| !m.is_empty() && m.len() < k)
        {
            return Err(ParamError::by_data(
                Param::Folds,
                k,
                format!(
                    "is more than the {} training documents of class {:?}: a fold would lose the class",
                    members.len(),
                    self.classes[c]
                ),
            )
            .into());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut fold_of = vec![0; self.labels.len()];
        // Round-robin continuing across classes keeps the fold sizes within one.
        let mut next = 0;
        for mut members in by_class {
            members.shuffle(&mut rng);
            for m in members {
                fold_of[m] = next % k;
                next += 1;
            }
        }
        Ok(fold_of)
    }

    /// Cross-validates every point on `k` folds; `progress(done, total)`
    /// counts fitted (fold, point) pairs. Folds run on parallel threads;
    /// results do not depend on how many.
    pub fn run(
        &self,
        points: &[GridPoint],
        k: u32,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Vec<CvResult>, OutOfFold), CvError> {
        self.check_points(points)?;
        let fold_of = self.folds(k)?;
        let k = k as usize;
        let total = k * points.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(k);
        let mut per_fold: Vec<Option<FoldOutcome>> = (0..k).map(|_| None).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (fold_of, done) = (&fold_of, &done);
                    s.spawn(move || {
                        (w..k)
                            .step_by(workers)
                            .map(|f| {
                                let tick = || {
                                    let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    progress(d + 1, total);
                                };
                                (f, self.fold(fold_of, f, points, &tick))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                for (f, r) in h.join().expect("fold worker panicked") {
                    per_fold[f] = Some(r);
                }
            }
        });
        let mut oof: OutOfFold = vec![vec![Vec::new(); self.labels.len()]; points.len()];
        let mut scores: Vec<FoldScores> = Vec::with_capacity(k);
        for r in per_fold {
            let (fold_scores, held_out) = r.expect("every fold ran")?;
            for (doc, per_point) in held_out {
                for (p, jll) in per_point.into_iter().enumerate() {
                    oof[p][doc] = jll;
                }
            }
            scores.push(fold_scores);
        }
        Ok((cv_results(points, &scores), oof))
    }

    /// Fits every point on all folds but `f` and scores fold `f`: the
    /// per-point figures and each held-out document's joint log likelihoods.
    fn fold(
        &self,
        fold_of: &[usize],
        f: usize,
        points: &[GridPoint],
        tick: &dyn Fn(),
    ) -> FoldOutcome {
        let (train, held): (Vec<usize>, Vec<usize>) =
            (0..self.labels.len()).partition(|&i| fold_of[i] != f);
        let c = self.classes.len();
        let stats = self.corpus.stats(&train, &self.labels, c);
        let mut models = FoldModels::new(&stats, self.corpus.terms().len(), c, points, f)?;
        let mut matrices = vec![ConfusionMatrix::new(c); points.len()];
        let mut jll_by_doc: Vec<Vec<Vec<f64>>> = Vec::with_capacity(held.len());
        for &doc in &held {
            let mut jll = Vec::with_capacity(points.len());
            models.score(self.corpus.doc(doc), &mut jll);
            for (m, j) in matrices.iter_mut().zip(&jll) {
                m.add(self.labels[doc], crate::classifier::argmax(j))
                    .expect("labels and predictions are classes");
            }
            jll_by_doc.push(jll);
        }
        let mut scores = Vec::with_capacity(points.len());
        for (p, m) in matrices.iter().enumerate() {
            scores.push(matrix_figures(m, &self.classes, models.terms(p), f)?);
            tick();
        }
        Ok((scores, held.into_iter().zip(jll_by_doc).collect()))
    }

    /// Fits `point` on the whole training part: scikit-learn's vocabulary
    /// and counts, through the counts `train` makes.
    pub fn refit(&self, point: &GridPoint) -> Result<(Vocabulary, NbParameters), CvError> {
        let rows: Vec<usize> = (0..self.corpus.len()).collect();
        let stats = self.corpus.stats(&rows, &self.labels, self.classes.len());
        fit_stats(&stats, self.corpus.terms(), point)
    }

    /// Fits a temperature for `point` on `k`-fold out-of-fold scores.
    pub fn calibrate(&self, point: &GridPoint, k: u32) -> Result<Calibration, CvError> {
        let (_, oof) = self.run(std::slice::from_ref(point), k, &|_, _| {})?;
        Ok(self.calibration_from(&oof[0], k))
    }

    /// The temperature calibration fitted on out-of-fold joint log likelihoods `jll`.
    pub fn calibration_from(&self, jll: &[Vec<f64>], k: u32) -> Calibration {
        calibration_of(jll, &self.labels, k, self.seed)
    }
}

/// Checks every point's values against their ranges and `n` training documents.
pub(crate) fn check_points(points: &[GridPoint], n: usize) -> Result<(), CvError> {
    for p in points {
        TrainParams::from(p).check()?;
        if let DfBound::Count(c) = p.min_df {
            if c as usize > n {
                return Err(ParamError::new(
                    Param::MinDf,
                    c,
                    format!("is more than the {n} training documents"),
                )
                .into());
            }
        }
        if p.max_df.doc_count(n) < p.min_df.doc_count(n) {
            return Err(ParamError::new(
                Param::MaxDf,
                p.max_df,
                format!("is below min_df {} ({n} training documents)", p.min_df),
            )
            .into());
        }
    }
    Ok(())
}

/// The temperature fitted on out-of-fold joint log likelihoods `jll` of
/// documents labelled `truth`, from `k` folds seeded by `seed`.
pub fn calibration_of(jll: &[Vec<f64>], truth: &[usize], k: u32, seed: u64) -> Calibration {
    let temperature = calibration::fit_temperature(jll, truth);
    Calibration {
        method: "temperature".into(),
        temperature,
        folds: k,
        seed,
        log_loss_before: calibration::log_loss(jll, truth, 1.0),
        log_loss_after: calibration::log_loss(jll, truth, temperature),
    }
}

/// Fits `point` on counts: their statistics pruned by the point's
/// vectorizer options, then its model's counts. `train`, `tune`, `merge`
/// and `retrain` all end here.
pub fn fit_counts(
    counts: &Counts,
    point: &GridPoint,
) -> Result<(Vocabulary, NbParameters), CvError> {
    if !point.binary && counts.settings().binary {
        return Err(CvError::Data(
            crate::classifier::CountsError::NotCounts.to_string(),
        ));
    }
    let stats = counts
        .stats(None)
        .map_err(|e| CvError::Data(e.to_string()))?;
    fit_stats(&stats, counts.terms(), point)
}

/// Prunes `stats` (over `terms`) with `point`'s options and fits its counts.
fn fit_stats(
    stats: &TermStats,
    terms: &[String],
    point: &GridPoint,
) -> Result<(Vocabulary, NbParameters), CvError> {
    let kept = stats
        .select(&point.vectorizer())
        .map_err(vectorizer_error)?;
    let parameters = stats
        .parameters(&kept, point.binary, point.alpha)
        .map_err(model_error)?;
    let kept: Vec<&str> = kept.iter().map(|&t| terms[t as usize].as_str()).collect();
    let vocabulary = Vocabulary::from_sorted(&kept).expect("sorted, unique, non-empty tokens");
    Ok((vocabulary, parameters))
}

/// The fold's vocabulary for `p`, with errors naming the fold.
fn select(stats: &TermStats, p: &GridPoint, fold: usize) -> Result<Vec<u32>, CvError> {
    stats
        .select(&p.vectorizer())
        .map_err(|e| match vectorizer_error(e) {
            CvError::Param(mut e) => {
                e.problem = format!("{} in fold {}", e.problem, fold + 1);
                CvError::Param(e)
            }
            CvError::Data(m) => CvError::Data(format!("fold {}: {m}", fold + 1)),
        })
}

/// A bound out of range is a bad value; an empty vocabulary is the data's.
fn vectorizer_error(e: VectorizerError) -> CvError {
    match e {
        VectorizerError::MaxBelowMin {
            max_df,
            min_df,
            max_docs,
            min_docs,
            n_docs,
        } => ParamError::new(
            Param::MaxDf,
            max_df,
            format!(
                "corresponds to fewer documents ({max_docs}) than min_df {min_df} ({min_docs}) for {n_docs} documents"
            ),
        )
        .into(),
        VectorizerError::Invalid(_) | VectorizerError::EmptyVocabulary { .. } => {
            CvError::Data(e.to_string())
        }
    }
}

/// An alpha out of range is a bad value; a missing class is the data's.
fn model_error(e: ModelError) -> CvError {
    match e {
        ModelError::Param(p) => CvError::Param(p),
        _ => CvError::Data(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Artifact;
    use crate::classifier::{best, Grid, MeanStd, ModelKind};
    use crate::training::{tune, RunOptions, TuneOptions};
    use std::path::Path;

    fn sample() -> Dataset {
        Dataset::from_csv(
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/sample.csv"
            )),
            "text",
            "label",
        )
        .unwrap()
    }

    fn grid() -> Grid {
        Grid {
            models: vec![ModelKind::Bernoulli, ModelKind::Complement],
            binary: true,
            alphas: vec![0.1, 1.0],
            min_dfs: vec![DfBound::Count(1), DfBound::Count(2)],
            max_dfs: vec![DfBound::Proportion(1.0)],
            max_features: vec![0, 500],
        }
    }

    fn options() -> TuneOptions {
        TuneOptions {
            grid: grid(),
            folds: 3,
            fold_rule: crate::tuning::FoldRule::Stratified,
            run: RunOptions {
                test_size: 0.25,
                seed: 7,
                name: "t".into(),
                version: Some("1".into()),
                created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            },
        }
    }

    #[test]
    fn folds_are_stratified_balanced_and_seeded() {
        let data = sample();
        let classes = data.classes();
        let cv = CrossValidation::new(&data, &classes, 3, |_, _| {});
        let a = cv.folds(4).unwrap();
        assert_eq!(a, cv.folds(4).unwrap());
        for c in 0..classes.len() {
            let sizes: Vec<usize> = (0..4)
                .map(|f| {
                    (0..a.len())
                        .filter(|&i| a[i] == f && cv.labels[i] == c)
                        .count()
                })
                .collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "class {c}: {sizes:?}");
        }
        let other = CrossValidation::new(&data, &classes, 4, |_, _| {});
        assert_ne!(a, other.folds(4).unwrap());
    }

    #[test]
    fn refit_is_what_train_fits() {
        let data = sample();
        let classes = data.classes();
        let labels = data.label_indices(&classes).unwrap();
        let cv = CrossValidation::new(&data, &classes, 1, |_, _| {});
        let point = grid().points()[0];
        let (v, p) = cv.refit(&point).unwrap();
        let (v2, p2) =
            crate::classifier::fit(&data.texts, &labels, classes.len(), 0.1, |_, _| {}).unwrap();
        assert_eq!(v.iter().collect::<Vec<_>>(), v2.iter().collect::<Vec<_>>());
        assert_eq!(p, p2);
    }

    #[test]
    fn tune_is_deterministic_and_stores_its_choice() {
        let data = sample();
        let a = tune(&data, None, &options(), |_, _| {}, &|_, _| {}).unwrap();
        let b = tune(&data, None, &options(), |_, _| {}, &|_, _| {}).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let report = a.tuning.as_ref().unwrap();
        assert_eq!(report.results.len(), 16);
        assert_eq!(report.best, best(&report.results));
        let chosen = report.results[report.best].params;
        assert_eq!(a.training.alpha, chosen.alpha);
        assert_eq!(a.training.model, Some(chosen.model));
        assert!(report
            .results
            .iter()
            .all(|r| r.f1_macro.mean <= report.results[report.best].f1_macro.mean));
        let t = a.calibration.as_ref().unwrap();
        assert!(t.temperature > 0.0 && t.log_loss_after <= t.log_loss_before);
        let loaded = Artifact::load_bytes(&a.to_bytes()).unwrap();
        assert_eq!(loaded.classifier.temperature(), Some(t.temperature));
        let e = a.evaluation.as_ref().unwrap();
        assert!(e.ece.is_some() && e.ece_uncalibrated.is_some());
    }

    #[test]
    fn best_breaks_ties_by_smaller_vocabulary() {
        let p = grid().points()[0];
        let r = |f1: f64, terms: f64| CvResult {
            params: p,
            f1_macro: MeanStd { mean: f1, std: 0.0 },
            balanced_accuracy: MeanStd {
                mean: 0.0,
                std: 0.0,
            },
            accuracy: MeanStd {
                mean: 0.0,
                std: 0.0,
            },
            vocabulary_size: terms,
        };
        assert_eq!(best(&[r(0.9, 100.0), r(0.95, 900.0), r(0.95, 500.0)]), 2);
        assert_eq!(best(&[r(0.9, 100.0), r(0.9, 100.0)]), 0);
    }

    #[test]
    fn bad_values_name_themselves() {
        let data = sample();
        let run = |edit: &dyn Fn(&mut TuneOptions)| {
            let mut o = options();
            edit(&mut o);
            tune(&data, None, &o, |_, _| {}, &|_, _| {})
                .unwrap_err()
                .to_string()
        };
        assert!(run(&|o| o.folds = 1).starts_with("folds 1: "));
        assert!(run(&|o| o.folds = 100_000).starts_with("folds 100000: is more than"));
        assert!(run(&|o| o.grid.alphas = vec![0.0]).starts_with("alpha 0.0: "));
        assert!(run(&|o| o.grid.alphas = vec![1e-12]).starts_with("alpha 1e-12: "));
        assert!(run(&|o| o.grid.min_dfs = vec![DfBound::Count(1_000_000)])
            .starts_with("min_df 1000000: is more than"));
        assert!(run(&|o| o.grid.max_dfs = vec![DfBound::Count(1)]).starts_with("max_df 1: "));
    }
}
