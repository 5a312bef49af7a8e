//! Sufficient statistics of a labelled corpus: everything a naive Bayes fit
//! needs, for any `min_df` / `max_df` / `max_features` / `alpha` / model.
//!
//! A [`Counts`] holds, per class, the documents counted and, for every term
//! seen (including terms a later pruning drops), the documents of the class
//! holding it and (unless the counts are binary) its occurrences in them;
//! optionally split into cross-validation folds. Counts add, subtract and
//! merge exactly (integers), so:
//!
//! - `train` is count + prune + fit ([`Counter`] then [`Counts::stats`] and
//!   the vectorizer's selection), and counting shards separately then
//!   merging them gives the same integers, hence the same model, in any
//!   merge order;
//! - a cross-validation fold's model is the total minus that fold's counts;
//! - learning and forgetting labelled examples is [`Counts::merge`] /
//!   [`Counts::subtract`] of their counts.
//!
//! The on-disk form (`*.counts`) is in [`format`].

pub mod format;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{tokenizer, TermStats};

/// The token pattern the tokenizer implements (recorded in counts files and
/// artifacts, so readers know how the text was cut).
pub const TOKEN_PATTERN: &str = r"(?u)\b\w\w+\b";

/// How documents are assigned to cross-validation folds, when counts are
/// kept per fold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "lowercase", deny_unknown_fields)]
pub enum FoldBy {
    /// By a hash of the text: [`hash_fold`] (the same text, whatever its
    /// label, is always in the same fold).
    Hash {
        /// Seeds the hash.
        seed: u64,
    },
    /// By an integer column of the CSV holding the fold, `0 ≤ fold < k`.
    Column {
        /// The column's name.
        column: String,
    },
}

/// A fold assignment: `k` folds, assigned `by`.
// No `deny_unknown_fields`: serde does not support it with `flatten`
// (`FoldBy` denies them itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldSpec {
    /// Number of folds (at least 2).
    pub k: u32,
    /// How a document's fold is chosen.
    #[serde(flatten)]
    pub by: FoldBy,
}

impl std::fmt::Display for FoldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.by {
            FoldBy::Hash { seed } => write!(f, "{} folds by text hash, seed {seed}", self.k),
            FoldBy::Column { column } => write!(f, "{} folds from column {column:?}", self.k),
        }
    }
}

/// The fold of `text` among `k` under [`FoldBy::Hash`]: the first eight
/// bytes of `sha256(seed as 8 little-endian bytes ‖ text as UTF-8)`, read
/// little-endian, modulo `k`. Stable across builds and machines.
pub fn hash_fold(seed: u64, text: &str, k: u32) -> u32 {
    (text_hash(seed, text) % u64::from(k.max(1))) as u32
}

/// The hash [`hash_fold`] takes modulo the number of folds.
pub fn text_hash(seed: u64, text: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(text.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// What shapes the counts: two counts merge only when these agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountSettings {
    /// Text is lowercased before tokenizing (always, as scikit-learn's default).
    pub lowercase: bool,
    /// The token pattern ([`TOKEN_PATTERN`]).
    pub token_pattern: String,
    /// Only document counts are kept (presence/absence features); else
    /// occurrences too.
    pub binary: bool,
    /// Counts kept per cross-validation fold, when set.
    pub folds: Option<FoldSpec>,
}

impl CountSettings {
    /// The settings this build counts with: `binary` or not, folds or not.
    pub fn new(binary: bool, folds: Option<FoldSpec>) -> Self {
        Self {
            lowercase: true,
            token_pattern: TOKEN_PATTERN.to_owned(),
            binary,
            folds,
        }
    }

    /// Number of folds the counts are kept in (1 without folds).
    pub fn n_folds(&self) -> usize {
        self.folds.as_ref().map_or(1, |f| f.k as usize)
    }

    /// Values per (term, fold, class) cell: documents, and occurrences
    /// unless binary.
    fn width(&self) -> usize {
        if self.binary {
            1
        } else {
            2
        }
    }

    /// Every setting on which `self` and `other` differ, as `name: a vs b`.
    pub fn differences(&self, other: &CountSettings) -> Vec<String> {
        let mut out = Vec::new();
        if self.lowercase != other.lowercase {
            out.push(format!(
                "lowercase: {} vs {}",
                self.lowercase, other.lowercase
            ));
        }
        if self.token_pattern != other.token_pattern {
            out.push(format!(
                "token_pattern: {:?} vs {:?}",
                self.token_pattern, other.token_pattern
            ));
        }
        if self.binary != other.binary {
            out.push(format!("binary: {} vs {}", self.binary, other.binary));
        }
        if self.folds != other.folds {
            let show =
                |f: &Option<FoldSpec>| f.as_ref().map_or("no folds".into(), |f| f.to_string());
            out.push(format!(
                "folds: {} vs {}",
                show(&self.folds),
                show(&other.folds)
            ));
        }
        out
    }
}

/// Why counts cannot be combined or used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CountsError {
    /// Counts made with different settings.
    #[error("counted with different settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    /// A sum past `u64::MAX`.
    #[error("counts add up past 2^64")]
    Overflow,
    /// Subtracting counts that were never added.
    #[error("cannot subtract: {0}")]
    Underflow(String),
    /// A fold index out of range.
    #[error("fold {fold} is out of range for {k} folds")]
    Fold {
        /// The fold given.
        fold: usize,
        /// Folds kept.
        k: usize,
    },
    /// Binary counts asked for occurrence-count features.
    #[error("these counts are binary (documents only); a model on term counts needs counts made without --binary")]
    NotCounts,
}

/// The sufficient statistics of labelled documents (see the module docs).
///
/// Canonical: classes sorted and each with a document, terms sorted and
/// each with a non-zero count, so equal statistics are equal values (and
/// equal bytes on disk).
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    settings: CountSettings,
    /// Sorted, unique.
    classes: Vec<String>,
    /// sha256 (hex) of every input file counted, sorted (a multiset).
    sources: Vec<String>,
    /// Documents per `[fold * classes + class]`.
    docs: Vec<u64>,
    /// Sorted, unique, non-empty.
    terms: Vec<String>,
    /// Term-major: `[((term * folds + fold) * classes + class) * width + w]`,
    /// `w` 0 = documents holding the term, 1 = its occurrences (not binary).
    cells: Vec<u64>,
}

impl Counts {
    /// No documents.
    pub fn empty(settings: CountSettings) -> Self {
        Self {
            settings,
            classes: Vec::new(),
            sources: Vec::new(),
            docs: Vec::new(),
            terms: Vec::new(),
            cells: Vec::new(),
        }
    }

    /// The settings counted with.
    pub fn settings(&self) -> &CountSettings {
        &self.settings
    }

    /// Class labels, sorted.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every term seen, sorted.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// sha256 (hex) of the files counted, sorted.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Records the files counted (sha256 hex each, any order).
    pub fn set_sources(&mut self, mut sources: Vec<String>) {
        sources.sort_unstable();
        self.sources = sources;
    }

    fn n_folds(&self) -> usize {
        self.settings.n_folds()
    }

    fn width(&self) -> usize {
        self.settings.width()
    }

    /// Cells per term.
    fn stride(&self) -> usize {
        self.n_folds() * self.classes.len() * self.width()
    }

    /// Bytes held on the heap (terms and counts), for memory budgets.
    pub fn heap_bytes(&self) -> u64 {
        let strings: usize = self.terms.iter().map(|t| t.capacity() + 24).sum();
        (strings + (self.cells.capacity() + self.docs.capacity()) * 8) as u64
    }

    /// Documents counted.
    pub fn documents(&self) -> u64 {
        self.docs.iter().sum()
    }

    /// Documents per class (all folds), in class order.
    pub fn class_documents(&self) -> Vec<u64> {
        let c = self.classes.len();
        (0..c)
            .map(|class| (0..self.n_folds()).map(|f| self.docs[f * c + class]).sum())
            .collect()
    }

    /// Documents of fold `fold` per class.
    pub fn fold_documents(&self, fold: usize) -> Vec<u64> {
        let c = self.classes.len();
        self.docs[fold * c..(fold + 1) * c].to_vec()
    }

    /// The per-term statistics of every fold but `exclude` (of all of them
    /// with `None`): the total minus that fold's counts. Binary counts
    /// report documents as occurrences.
    pub fn stats(&self, exclude: Option<usize>) -> Result<TermStats, CountsError> {
        let (folds, c, w) = (self.n_folds(), self.classes.len(), self.width());
        if let Some(fold) = exclude {
            if fold >= folds {
                return Err(CountsError::Fold { fold, k: folds });
            }
        }
        let n = self.terms.len();
        let mut class_df = vec![vec![0u64; n]; c];
        let mut class_tf = vec![vec![0u64; n]; c];
        let stride = self.stride();
        for t in 0..n {
            let cells = &self.cells[t * stride..(t + 1) * stride];
            for class in 0..c {
                let (mut df, mut tf) = (0u64, 0u64);
                for f in 0..folds {
                    let at = (f * c + class) * w;
                    let (d, o) = (cells[at], cells[at + w - 1]);
                    // Sums of parts of one u64 total: they cannot wrap.
                    df += d;
                    tf += o;
                }
                if let Some(f) = exclude {
                    let at = (f * c + class) * w;
                    df -= cells[at];
                    tf -= cells[at + w - 1];
                }
                class_df[class][t] = df;
                class_tf[class][t] = tf;
            }
        }
        let mut class_docs = self.class_documents();
        if let Some(f) = exclude {
            for (class, d) in class_docs.iter_mut().enumerate() {
                *d -= self.docs[f * c + class];
            }
        }
        Ok(TermStats::from_class_counts(class_docs, class_df, class_tf))
    }

    /// The same counts with their folds added up (settings without folds).
    pub fn without_folds(&self) -> Counts {
        let (folds, c, w) = (self.n_folds(), self.classes.len(), self.width());
        if folds == 1 {
            let mut same = self.clone();
            same.settings.folds = None;
            return same;
        }
        let sum = |cells: &[u64], w: usize| -> Vec<u64> {
            (0..c * w)
                .map(|i| (0..folds).map(|f| cells[f * c * w + i]).sum())
                .collect()
        };
        let stride = self.stride();
        Counts {
            settings: CountSettings {
                folds: None,
                ..self.settings.clone()
            },
            classes: self.classes.clone(),
            sources: self.sources.clone(),
            docs: sum(&self.docs, 1),
            terms: self.terms.clone(),
            cells: self
                .cells
                .chunks_exact(stride)
                .flat_map(|t| sum(t, w))
                .collect(),
        }
    }

    /// Checks that `self` and `other` were counted alike.
    fn same_settings(&self, other: &Counts) -> Result<(), CountsError> {
        let diff = self.settings.differences(&other.settings);
        if diff.is_empty() {
            Ok(())
        } else {
            Err(CountsError::Settings(diff))
        }
    }

    /// The sum of `self` and `other`: classes and terms are unions, every
    /// count adds. Associative and commutative, exactly.
    pub fn merge(&self, other: &Counts) -> Result<Counts, CountsError> {
        self.same_settings(other)?;
        self.combine(other, |a, b| a.checked_add(b).ok_or(CountsError::Overflow))
    }

    /// `self` minus `other` (counts of documents `self` holds): every count
    /// of `other` must be within `self`'s. Classes left without documents
    /// and terms left without counts are dropped, so forgetting what was
    /// learned gives back exactly the counts learned on.
    pub fn subtract(&self, other: &Counts) -> Result<Counts, CountsError> {
        self.same_settings(other)?;
        let mut sources = self.sources.clone();
        for s in &other.sources {
            let i = sources
                .binary_search(s)
                .map_err(|_| CountsError::Underflow(format!("source {s} was never counted in")))?;
            sources.remove(i);
        }
        let mut out = self.combine(other, |a, b| {
            a.checked_sub(b)
                .ok_or_else(|| CountsError::Underflow("more documents than were counted".into()))
        })?;
        out.sources = sources;
        out.compact();
        Ok(out)
    }

    /// Every class of `self` and `other` and every term, with `op` applied
    /// to each pair of counts (0 where one side lacks the class or term).
    fn combine(
        &self,
        other: &Counts,
        op: impl Fn(u64, u64) -> Result<u64, CountsError>,
    ) -> Result<Counts, CountsError> {
        let mut classes: Vec<String> = self.classes.iter().chain(&other.classes).cloned().collect();
        classes.sort_unstable();
        classes.dedup();
        let map = |from: &[String]| -> Vec<usize> {
            from.iter()
                .map(|c| classes.binary_search(c).expect("a union member"))
                .collect()
        };
        let (map_a, map_b) = (map(&self.classes), map(&other.classes));
        let (folds, w, c) = (self.n_folds(), self.width(), classes.len());
        let stride = folds * c * w;
        // Spreads one side's cells for a term over the union's classes.
        // `w` values per (fold, class): the width for terms, 1 for documents.
        let spread = |src: &Counts, map: &[usize], w: usize, cells: &[u64], out: &mut [u64]| {
            let sc = src.classes.len();
            for f in 0..folds {
                for (class, &to) in map.iter().enumerate() {
                    for k in 0..w {
                        out[(f * c + to) * w + k] = cells[(f * sc + class) * w + k];
                    }
                }
            }
        };
        let mut docs_a = vec![0u64; folds * c];
        let mut docs_b = vec![0u64; folds * c];
        spread(self, &map_a, 1, &self.docs, &mut docs_a);
        spread(other, &map_b, 1, &other.docs, &mut docs_b);
        let docs = docs_a
            .iter()
            .zip(&docs_b)
            .map(|(&a, &b)| op(a, b))
            .collect::<Result<Vec<u64>, _>>()?;
        let mut terms = Vec::with_capacity(self.terms.len().max(other.terms.len()));
        let mut cells = Vec::with_capacity(stride * self.terms.len().max(other.terms.len()));
        let (sa, sb) = (self.stride(), other.stride());
        let (mut i, mut j) = (0, 0);
        let mut a = vec![0u64; stride];
        let mut b = vec![0u64; stride];
        while i < self.terms.len() || j < other.terms.len() {
            let order = match (self.terms.get(i), other.terms.get(j)) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            a.iter_mut().for_each(|x| *x = 0);
            b.iter_mut().for_each(|x| *x = 0);
            let term = if order.is_le() {
                spread(self, &map_a, w, &self.cells[i * sa..(i + 1) * sa], &mut a);
                i += 1;
                &self.terms[i - 1]
            } else {
                &other.terms[j]
            };
            if order.is_ge() {
                spread(other, &map_b, w, &other.cells[j * sb..(j + 1) * sb], &mut b);
                j += 1;
            }
            terms.push(term.clone());
            for (x, y) in a.iter().zip(&b) {
                cells.push(op(*x, *y).map_err(|e| match e {
                    CountsError::Underflow(_) => {
                        CountsError::Underflow(format!("term {term:?} counted fewer times"))
                    }
                    e => e,
                })?);
            }
        }
        let mut sources: Vec<String> = self.sources.iter().chain(&other.sources).cloned().collect();
        sources.sort_unstable();
        Ok(Counts {
            settings: self.settings.clone(),
            classes,
            sources,
            docs,
            terms,
            cells,
        })
    }

    /// Drops classes without documents and terms without counts.
    fn compact(&mut self) {
        let (folds, w, c) = (self.n_folds(), self.width(), self.classes.len());
        let keep: Vec<usize> = (0..c)
            .filter(|&class| (0..folds).any(|f| self.docs[f * c + class] > 0))
            .collect();
        let nc = keep.len();
        let stride = self.stride();
        let new_stride = folds * nc * w;
        let mut terms = Vec::new();
        let mut cells = Vec::new();
        for (t, term) in self.terms.iter().enumerate() {
            let old = &self.cells[t * stride..(t + 1) * stride];
            if old.iter().all(|&x| x == 0) {
                continue;
            }
            terms.push(term.clone());
            let start = cells.len();
            cells.resize(start + new_stride, 0);
            for f in 0..folds {
                for (to, &class) in keep.iter().enumerate() {
                    for k in 0..w {
                        cells[start + (f * nc + to) * w + k] = old[(f * c + class) * w + k];
                    }
                }
            }
        }
        let docs = (0..folds)
            .flat_map(|f| keep.iter().map(move |&class| (f, class)))
            .map(|(f, class)| self.docs[f * c + class])
            .collect();
        self.classes = keep.iter().map(|&i| self.classes[i].clone()).collect();
        self.docs = docs;
        self.terms = terms;
        self.cells = cells;
    }
}

/// Counts documents one at a time (the only way counts are made from text):
/// memory grows with the vocabulary and the classes, never with the
/// documents.
#[derive(Debug)]
pub struct Counter {
    settings: CountSettings,
    ids: HashMap<String, u32>,
    /// In order of first appearance.
    terms: Vec<String>,
    /// In order of first appearance.
    classes: Vec<String>,
    /// `[class][fold]`.
    docs: Vec<Vec<u64>>,
    /// `[class * folds + fold]`: `[term id * width + w]`, grown lazily.
    cells: Vec<Vec<u64>>,
    lowercase: String,
    tokens: Vec<u32>,
}

impl Counter {
    /// An empty counter.
    pub fn new(settings: CountSettings) -> Self {
        Self {
            settings,
            ids: HashMap::new(),
            terms: Vec::new(),
            classes: Vec::new(),
            docs: Vec::new(),
            cells: Vec::new(),
            lowercase: String::new(),
            tokens: Vec::new(),
        }
    }

    /// Distinct labels so far.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Distinct terms so far.
    pub fn n_terms(&self) -> usize {
        self.terms.len()
    }

    /// Counts one document of class `label` in fold `fold` (0 without folds).
    pub fn add(&mut self, text: &str, label: &str, fold: usize) -> Result<(), CountsError> {
        let folds = self.settings.n_folds();
        if fold >= folds {
            return Err(CountsError::Fold { fold, k: folds });
        }
        let class = match self.classes.iter().position(|c| c == label) {
            Some(i) => i,
            None => {
                self.classes.push(label.to_owned());
                self.docs.push(vec![0; folds]);
                self.cells.extend((0..folds).map(|_| Vec::new()));
                self.classes.len() - 1
            }
        };
        self.docs[class][fold] += 1;
        tokenizer::lowercase_into(text, &mut self.lowercase);
        self.tokens.clear();
        let (ids, terms, tokens) = (&mut self.ids, &mut self.terms, &mut self.tokens);
        tokenizer::for_each_token(&self.lowercase, |t| {
            let id = match ids.get(t) {
                Some(&id) => id,
                None => {
                    let id = terms.len() as u32;
                    ids.insert(t.to_owned(), id);
                    terms.push(t.to_owned());
                    id
                }
            };
            tokens.push(id);
        });
        self.tokens.sort_unstable();
        let w = self.settings.width();
        let row = &mut self.cells[class * folds + fold];
        if row.len() < self.terms.len() * w {
            row.resize(self.terms.len() * w, 0);
        }
        let mut i = 0;
        while i < self.tokens.len() {
            let t = self.tokens[i];
            let run = self.tokens[i..].iter().take_while(|&&x| x == t).count();
            row[t as usize * w] += 1;
            if w == 2 {
                row[t as usize * w + 1] += run as u64;
            }
            i += run;
        }
        Ok(())
    }

    /// The counts, sorted into canonical form, from the files `sources`
    /// (sha256 hex each).
    pub fn finish(self, sources: Vec<String>) -> Counts {
        let Self {
            settings,
            ids,
            terms,
            classes,
            docs,
            cells: rows,
            ..
        } = self;
        drop(ids);
        let (folds, w) = (settings.n_folds(), settings.width());
        let mut class_order: Vec<usize> = (0..classes.len()).collect();
        class_order.sort_unstable_by(|&a, &b| classes[a].cmp(&classes[b]));
        let mut term_order: Vec<u32> = (0..terms.len() as u32).collect();
        term_order.sort_unstable_by(|&a, &b| terms[a as usize].cmp(&terms[b as usize]));
        let c = classes.len();
        let stride = folds * c * w;
        let mut cells = vec![0u64; terms.len() * stride];
        for (r, &id) in term_order.iter().enumerate() {
            let out = &mut cells[r * stride..(r + 1) * stride];
            for f in 0..folds {
                for (to, &class) in class_order.iter().enumerate() {
                    let row = &rows[class * folds + f];
                    for k in 0..w {
                        out[(f * c + to) * w + k] =
                            row.get(id as usize * w + k).copied().unwrap_or(0);
                    }
                }
            }
        }
        let mut slots: Vec<Option<String>> = terms.into_iter().map(Some).collect();
        let terms = term_order
            .iter()
            .map(|&id| slots[id as usize].take().expect("each id once"))
            .collect();
        let docs = (0..folds)
            .flat_map(|f| class_order.iter().map(move |&class| (f, class)))
            .map(|(f, class)| docs[class][f])
            .collect();
        let mut counts = Counts {
            settings,
            classes: class_order.iter().map(|&i| classes[i].clone()).collect(),
            sources: Vec::new(),
            docs,
            terms,
            cells,
        };
        counts.set_sources(sources);
        counts
    }
}
