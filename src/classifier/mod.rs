//! The classifier: pure computation, no I/O, no HTTP, no global state.
//!
//! `CountVectorizer` + `BernoulliNB` (or `MultinomialNB` / `ComplementNB`)
//! as scikit-learn defines them, split into tokenization, vocabulary options,
//! fitting, the model, calibration and evaluation.

pub mod calibration;
mod evaluation;
mod family;
mod fit;
mod grid;
mod model;
pub mod params;
mod split;
pub mod stats;
pub mod tokenizer;
pub mod unicode14;
pub mod vectorizer;
mod vocabulary;

pub use evaluation::{evaluate, ClassScores, ConfusionMatrix, Evaluation, EvaluationError};
pub use fit::fit;
pub use grid::{best, CvResult, Grid, GridPoint, MeanStd, TuningReport};
pub use model::{
    argmax, normalize_log_probs, validate_alpha, ModelError, ModelKind, NaiveBayes, NbParameters,
};
pub use params::{Param, ParamError, TrainParams, ValidTrainParams};
pub use split::{stratified_split, Split, SplitError};
pub use stats::{CountSettings, Counter, Counts, CountsError, FoldBy, FoldSpec};
pub use vectorizer::{DfBound, TermCounts, TermStats, VectorizerError, VectorizerOptions};
pub use vocabulary::{Key, Vocabulary, VocabularyError, KEY_PADDING};

use std::cell::RefCell;

/// One document's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index of the predicted class.
    pub label: usize,
    /// Normalised log probability per class (finite, `exp` sums to 1).
    pub log_probabilities: Vec<f64>,
    /// Token occurrences in the document.
    pub tokens: usize,
    /// Token occurrences not in the vocabulary.
    pub oov_tokens: usize,
}

impl Prediction {
    /// Probability per class.
    pub fn probabilities(&self) -> Vec<f64> {
        self.log_probabilities.iter().map(|v| v.exp()).collect()
    }

    /// Probability of the predicted class.
    pub fn confidence(&self) -> f64 {
        self.log_probabilities[self.label].exp()
    }

    /// Share of token occurrences unseen at training time; `None` without tokens.
    pub fn oov_ratio(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.oov_tokens as f64 / self.tokens as f64)
    }
}

/// A term and how much it pushed the prediction toward the predicted class.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The vocabulary term.
    pub term: String,
    /// Log-odds added to the predicted class relative to the runner-up class.
    pub log_odds: f64,
}

/// Vectorizer + model: text in, prediction out.
#[derive(Debug, Clone)]
pub struct Classifier {
    classes: Vec<String>,
    vocabulary: Vocabulary,
    model: NaiveBayes,
    /// Probabilities are `softmax(jll / T)` when set (labels are unchanged).
    temperature: Option<f64>,
}

/// What follows a document in its lowercased copy: [`KEY_PADDING`] zero
/// bytes, which no token includes.
const PADDING: &str = "\0\0\0\0\0\0\0\0";
const _: () = assert!(PADDING.len() == KEY_PADDING);

/// Tokens looked up together (see [`Classifier::features_into`]).
const LOOKUP_BATCH: usize = 256;

/// A token waiting to be looked up: its byte range in the lowercased copy
/// and its key.
#[derive(Clone, Copy, Default)]
struct Pending {
    start: usize,
    len: usize,
    key: Key,
}

/// Per-thread scratch space, so scoring allocates nothing per document once warm.
#[derive(Default)]
struct Scratch {
    /// The document lowercased, then [`PADDING`].
    lowercase: String,
    /// Room for [`LOOKUP_BATCH`] tokens waiting to be looked up.
    batch: Vec<Pending>,
    /// The document's distinct known features, in order of first occurrence.
    features: Vec<u32>,
    /// Every known token occurrence (feature index), for models scored on
    /// term counts; left empty for binary models.
    occurrences: Vec<u32>,
    /// `occurrences` as ascending `(feature, count)` pairs.
    counts: Vec<(u32, u32)>,
    /// For binary models, the joint log likelihood of `features` so far:
    /// each feature's deltas are added when it is first found, in the order
    /// [`NaiveBayes::joint_log_likelihood`] would add them, without a pass
    /// of its own over the features. (A two-class model's sums are held in
    /// registers while a batch of tokens is looked up and stored here after
    /// each batch.)
    jll: Vec<f64>,
    /// One bit per vocabulary term. Invariant: exactly the bits of the
    /// indices in `features` are set, so clearing it costs O(features), not
    /// O(vocabulary), and a panic mid-document cannot leave stale bits behind.
    seen: Vec<u64>,
}

impl Scratch {
    /// Empties `features` (and its bits) and sizes `seen` for `n_terms`.
    fn reset(&mut self, n_terms: usize) {
        for &f in &self.features {
            self.seen[f as usize / 64] &= !(1 << (f % 64));
        }
        self.features.clear();
        self.occurrences.clear();
        let words = n_terms.div_ceil(64);
        if self.seen.len() < words {
            self.seen.resize(words, 0);
        }
    }

    /// Adds feature `f` unless the document already has it; true when new.
    #[inline]
    fn insert(&mut self, f: u32) -> bool {
        let (word, bit) = (f as usize / 64, 1u64 << (f % 64));
        let new = self.seen[word] & bit == 0;
        if new {
            self.seen[word] |= bit;
            self.features.push(f);
        }
        new
    }
}

/// Joint log likelihoods to normalised log probabilities, divided by the
/// calibration temperature first when there is one.
fn to_log_probabilities(jll: &mut [f64], temperature: Option<f64>) {
    if let Some(t) = temperature {
        jll.iter_mut().for_each(|v| *v /= t);
    }
    normalize_log_probs(jll);
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Classifier {
    /// Joins a vocabulary and a model; class and feature counts must agree.
    pub fn new(
        classes: Vec<String>,
        vocabulary: Vocabulary,
        model: NaiveBayes,
    ) -> Result<Self, ModelError> {
        if classes.len() != model.n_classes() {
            return Err(ModelError::Shape(format!(
                "{} class names for a model of {} classes",
                classes.len(),
                model.n_classes()
            )));
        }
        if vocabulary.len() != model.n_features() {
            return Err(ModelError::Shape(format!(
                "vocabulary has {} terms but the model has {} features",
                vocabulary.len(),
                model.n_features()
            )));
        }
        Ok(Self {
            classes,
            vocabulary,
            model,
            temperature: None,
        })
    }

    /// Sets the calibration temperature (`None`: scikit-learn's probabilities).
    pub fn with_temperature(mut self, temperature: Option<f64>) -> Self {
        self.temperature = temperature;
        self
    }

    /// The calibration temperature, if any.
    pub fn temperature(&self) -> Option<f64> {
        self.temperature
    }

    /// Class names in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The vocabulary.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The scoring model.
    pub fn model(&self) -> &NaiveBayes {
        &self.model
    }

    /// Predicts one document: O(tokens × classes). Probabilities are
    /// calibrated when the classifier has a temperature.
    pub fn predict(&self, text: &str) -> Prediction {
        self.predict_at(text, self.temperature)
    }

    /// Predicts one document with scikit-learn's (uncalibrated) probabilities.
    pub fn predict_uncalibrated(&self, text: &str) -> Prediction {
        self.predict_at(text, None)
    }

    fn predict_at(&self, text: &str, temperature: Option<f64>) -> Prediction {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (tokens, oov_tokens) = self.features_into(text, &mut s);
            let mut log_probabilities = Vec::with_capacity(self.classes.len());
            if self.model.uses_counts() {
                let s = &mut *s;
                s.occurrences.sort_unstable();
                s.counts.clear();
                for &f in &s.occurrences {
                    match s.counts.last_mut() {
                        Some((last, n)) if *last == f => *n += 1,
                        _ => s.counts.push((f, 1)),
                    }
                }
                self.model
                    .joint_log_likelihood_counts(&s.counts, &mut log_probabilities);
            } else {
                log_probabilities.extend_from_slice(&s.jll);
            }
            let label = argmax(&log_probabilities);
            to_log_probabilities(&mut log_probabilities, temperature);
            Prediction {
                label,
                log_probabilities,
                tokens,
                oov_tokens,
            }
        })
    }

    /// Scores the empty document and one holding every vocabulary term,
    /// with and without the calibration temperature, and refuses the model
    /// when any log probability is not a finite number: a model that passes
    /// answers numbers JSON can carry and live metrics can average.
    pub fn check_finite_scores(&self) -> Result<(), ModelError> {
        let mut jll = Vec::with_capacity(self.classes.len());
        for (what, every_term) in [
            ("the empty document", false),
            ("a document of every term", true),
        ] {
            if every_term {
                self.model.joint_log_likelihood_all(&mut jll);
            } else {
                self.model.joint_log_likelihood(&[], &mut jll);
            }
            for temperature in [None, self.temperature] {
                let mut scores = jll.clone();
                to_log_probabilities(&mut scores, temperature);
                if !scores.iter().all(|v| v.is_finite()) {
                    return Err(ModelError::NonFiniteScores(what));
                }
            }
        }
        Ok(())
    }

    /// Predicts many documents.
    pub fn predict_batch<S: AsRef<str>>(&self, texts: &[S]) -> Vec<Prediction> {
        texts.iter().map(|t| self.predict(t.as_ref())).collect()
    }

    /// The distinct feature indices of `text`, ascending.
    pub fn features(&self, text: &str) -> Vec<u32> {
        let mut scratch = Scratch::default();
        self.features_into(text, &mut scratch);
        scratch.features.sort_unstable();
        scratch.features
    }

    /// Fills `scratch.features` with the distinct known feature indices of
    /// `text`, in order of first occurrence, and returns `(token occurrences,
    /// unknown token occurrences)`.
    ///
    /// scikit-learn sums a document's deltas in ascending feature order;
    /// summing in occurrence order instead changes the joint log likelihood
    /// only in its last bits (far inside the parity tolerance), while sorting
    /// every document would add a sort to the hottest path for no gain.
    fn features_into(&self, text: &str, scratch: &mut Scratch) -> (usize, usize) {
        scratch.reset(self.vocabulary.len());
        scratch.jll.clear();
        scratch.jll.extend_from_slice(self.model.base());
        // Taken out for the scan, so the token callback can borrow the rest.
        let mut lowercase = std::mem::take(&mut scratch.lowercase);
        // The lowercased copy is what the tokens are hashed and compared in:
        // ASCII is lowercased in bulk (vector instructions, a fraction of an
        // instruction per byte), where lowercasing each token's bytes as it
        // is read cost more per token than the whole copy. The zero bytes
        // past the end let every token's key be read in whole eight-byte
        // loads (`Vocabulary::key_at`).
        tokenizer::lowercase_into(text, &mut lowercase);
        let len = lowercase.len();
        lowercase.push_str(PADDING);
        let (text, padded) = (&lowercase[..len], lowercase.as_bytes());
        // Tokens are found and hashed first, then looked up [`LOOKUP_BATCH`]
        // at a time. The lookups miss the L1 cache (the table is a megabyte or
        // more); in a tight loop of independent lookups the CPU overlaps them, where one
        // lookup per scanned token would wait for each in turn. Batching keeps
        // the buffer small however long the document. The batch is an array
        // filled by index rather than a `Vec` pushed to: no capacity check
        // or length kept in memory per token, and the count of tokens is
        // summed per batch.
        let mut batch = std::mem::take(&mut scratch.batch);
        batch.resize(LOOKUP_BATCH, Pending::default());
        let pending: &mut [Pending; LOOKUP_BATCH] =
            (&mut batch[..]).try_into().expect("sized above");
        let (mut tokens, mut oov, mut n) = (0, 0, 0);
        tokenizer::for_each_token_span(text, |start, end| {
            let len = end - start;
            // `n` < LOOKUP_BATCH (the batch is looked up when full); the
            // modulo is that bound stated to the compiler, which drops the
            // bounds check.
            pending[n % LOOKUP_BATCH] = Pending {
                start,
                len,
                key: Vocabulary::key_at(padded, start, len),
            };
            n += 1;
            if n == LOOKUP_BATCH {
                oov += self.look_up(padded, &pending[..], scratch);
                tokens += n;
                n = 0;
            }
        });
        oov += self.look_up(padded, &pending[..n], scratch);
        tokens += n;
        scratch.batch = batch;
        scratch.lowercase = lowercase;
        (tokens, oov)
    }

    /// Looks up the `pending` tokens of `text` (the padded lowercased copy),
    /// adds the known ones to `scratch` and returns how many were unknown.
    fn look_up(&self, text: &[u8], pending: &[Pending], scratch: &mut Scratch) -> usize {
        // One loop per kind of model, each with its own step for a known
        // token, rather than one loop asking per token which kind it is.
        if self.model.uses_counts() {
            self.look_up_each(text, pending, scratch, |scratch, f, _| {
                scratch.occurrences.push(f)
            })
        } else if let Some(deltas) = self.model.two_class_deltas() {
            // The two sums stay in registers for the batch; the same
            // additions in the same order as `NaiveBayes::add_feature`.
            let mut jll: [f64; 2] = scratch.jll[..].try_into().expect("two classes");
            let oov = self.look_up_each(text, pending, scratch, |_, f, new| {
                if new {
                    let [a, b] = deltas[f as usize];
                    jll[0] += a;
                    jll[1] += b;
                }
            });
            scratch.jll.copy_from_slice(&jll);
            oov
        } else {
            self.look_up_each(text, pending, scratch, |scratch, f, new| {
                if new {
                    self.model.add_feature(f, &mut scratch.jll);
                }
            })
        }
    }

    /// [`Classifier::look_up`] with `known(scratch, feature, first time in
    /// the document)` called for each known token.
    #[inline(always)]
    fn look_up_each(
        &self,
        text: &[u8],
        pending: &[Pending],
        scratch: &mut Scratch,
        mut known: impl FnMut(&mut Scratch, u32, bool),
    ) -> usize {
        let mut oov = 0;
        for p in pending {
            match self.vocabulary.get_at(text, p.start, p.len, p.key) {
                Some(f) => {
                    let new = scratch.insert(f);
                    known(scratch, f, new);
                }
                None => oov += 1,
            }
        }
        oov
    }

    /// The `k` present terms that most favour `prediction.label` over the
    /// runner-up class, largest first (only terms with a positive push).
    pub fn explain(&self, text: &str, prediction: &Prediction, k: usize) -> Vec<Contribution> {
        let winner = prediction.label;
        let runner_up = (0..self.classes.len())
            .filter(|&c| c != winner)
            .max_by(|&a, &b| {
                prediction.log_probabilities[a].total_cmp(&prediction.log_probabilities[b])
            });
        let Some(runner_up) = runner_up else {
            return Vec::new();
        };
        let mut contributions: Vec<Contribution> = self
            .features(text)
            .into_iter()
            .map(|f| {
                let f = f as usize;
                Contribution {
                    term: self.vocabulary.term(f).to_owned(),
                    log_odds: self.model.feature_delta(f, winner)
                        - self.model.feature_delta(f, runner_up),
                }
            })
            .filter(|c| c.log_odds > 0.0)
            .collect();
        contributions.sort_by(|a, b| b.log_odds.total_cmp(&a.log_odds));
        contributions.truncate(k);
        contributions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn toy() -> Classifier {
        let texts = [
            "win free money now",
            "free prize claim now",
            "cheap pills online",
            "meeting agenda for monday",
            "lunch with the team",
            "project review notes attached",
        ];
        let labels = [1, 1, 1, 0, 0, 0];
        let (vocab, params) = fit(&texts, &labels, 2, 1.0, |_, _| {}).unwrap();
        Classifier::new(
            vec!["ham".into(), "spam".into()],
            vocab,
            NaiveBayes::new(&params).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_vanishing_temperature_fails_the_finite_score_check() {
        let c = toy();
        assert_eq!(c.check_finite_scores(), Ok(()));
        let t = *params::TEMPERATURE_RANGE.start();
        assert_eq!(
            c.clone().with_temperature(Some(t)).check_finite_scores(),
            Ok(())
        );
        // What such a model would serve: NaN probabilities (JSON `null`).
        let hot = c.with_temperature(Some(5e-324));
        assert!(hot.predict("free money").log_probabilities[0].is_nan());
        assert_eq!(
            hot.check_finite_scores(),
            Err(ModelError::NonFiniteScores("the empty document"))
        );
    }

    #[test]
    fn predicts_the_obvious_cases_and_counts_oov() {
        let c = toy();
        assert_eq!(c.predict("free money prize").label, 1);
        assert_eq!(c.predict("team meeting notes").label, 0);
        let p = c.predict("free zzzz qqqq");
        assert_eq!((p.tokens, p.oov_tokens), (3, 2));
        assert_eq!(c.predict("").oov_ratio(), None);
    }

    #[test]
    fn explain_names_present_terms_toward_the_winner() {
        let c = toy();
        let text = "claim your free prize";
        let p = c.predict(text);
        assert_eq!(p.label, 1);
        // By hand, Bernoulli NB with alpha 1 over 3 spam and 3 ham documents:
        // p(t|c) = (documents of c with t + 1) / 5, push = logit p(t|spam) −
        // logit p(t|ham). "free" is in 2 spam documents: ln(3/2) − ln(1/4) =
        // ln 6; "claim" and "prize" in 1: ln(2/3) − ln(1/4) = ln(8/3) each
        // (ties in vocabulary order); "your" is out of vocabulary.
        let e = c.explain(text, &p, 3);
        let got: Vec<(&str, f64)> = e.iter().map(|x| (x.term.as_str(), x.log_odds)).collect();
        let want = [
            ("free", 6f64.ln()),
            ("claim", (8.0f64 / 3.0).ln()),
            ("prize", (8.0f64 / 3.0).ln()),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((term, odds), (want_term, want_odds)) in got.iter().zip(want) {
            assert_eq!(*term, want_term, "{got:?}");
            assert!(
                (odds - want_odds).abs() < 1e-12,
                "{term}: {odds} vs {want_odds}"
            );
        }
        assert_eq!(c.explain(text, &p, 1).len(), 1, "k bounds the list");
    }

    #[test]
    fn scratch_reuse_does_not_leak_between_documents() {
        // The thread's scratch (and its seen-bitset) carries over from one
        // document to the next; a fresh scratch must give identical results.
        let c = toy();
        let docs = [
            "free money free prize now now",
            "team meeting",
            "",
            "free money free prize now now",
        ];
        for d in docs {
            let fresh = c.features(d);
            let mut sorted = fresh.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(fresh, sorted, "distinct and ascending");
            let on_thread = c.predict(d);
            let other_thread = std::thread::scope(|s| s.spawn(|| c.predict(d)).join().unwrap());
            assert_eq!(on_thread, other_thread);
        }
    }

    /// `predict` the plain way: owned tokens of the lowercased text, one
    /// `Vocabulary::get` each, distinct features in order of first
    /// occurrence, one `joint_log_likelihood` pass.
    fn reference_prediction(c: &Classifier, text: &str) -> Prediction {
        let tokens = tokenizer::tokenize(text);
        let mut features: Vec<u32> = Vec::new();
        let mut oov_tokens = 0;
        for t in &tokens {
            match c.vocabulary.get(t) {
                Some(f) if !features.contains(&f) => features.push(f),
                Some(_) => {}
                None => oov_tokens += 1,
            }
        }
        let mut jll = Vec::new();
        c.model.joint_log_likelihood(&features, &mut jll);
        let label = argmax(&jll);
        normalize_log_probs(&mut jll);
        Prediction {
            label,
            log_probabilities: jll,
            tokens: tokens.len(),
            oov_tokens,
        }
    }

    #[test]
    fn the_fast_path_scores_exactly_like_the_plain_one() {
        let c = toy();
        // All-ASCII text and text with a non-ASCII byte (lowercased in bulk
        // or through the Unicode mapping), terms at the end of the text
        // (their keys read into the padding), repeats.
        for text in [
            "WIN Free MONEY now, FREE prize",
            "Meeting AGENDA for Monday \u{e9}t\u{e9} FREE",
            "cheap PILLS",
            "team",
            "",
        ] {
            assert_eq!(c.predict(text), reference_prediction(&c, text), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn predictions_match_the_plain_reference_bit_for_bit(
            text in "([a-zA-Z .,\n]{0,12}(free|FREE|Money|TEAM|meeting|agenda)?[\u{e9}\u{130}\u{3a3}\u{212a}]?){0,20}"
        ) {
            let c = toy();
            prop_assert_eq!(c.predict(&text), reference_prediction(&c, &text));
        }

        #[test]
        fn probabilities_are_finite_and_sum_to_one(text in any::<String>()) {
            let p = toy().predict(&text);
            let probs = p.probabilities();
            prop_assert!(p.log_probabilities.iter().all(|v| v.is_finite() && *v <= 0.0));
            prop_assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }

        #[test]
        fn token_order_and_repetition_do_not_matter(
            words in proptest::collection::vec("[a-z]{2,6}|free|money|team|meeting", 0..30),
            seed in any::<u64>(),
        ) {
            let c = toy();
            let base = c.predict(&words.join(" "));
            let mut shuffled = words.clone();
            let n = shuffled.len();
            if n > 1 {
                let k = (seed % n as u64) as usize;
                shuffled.rotate_left(k);
                shuffled.reverse();
            }
            let mut repeated = shuffled.clone();
            repeated.extend(words.iter().cloned());
            let other = c.predict(&repeated.join("  "));
            prop_assert_eq!(base.label, other.label);
            for (a, b) in base.log_probabilities.iter().zip(&other.log_probabilities) {
                prop_assert!((a - b).abs() < 1e-9);
            }
        }
    }
}
