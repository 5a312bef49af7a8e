//! scikit-learn's `CountVectorizer` vocabulary options (`min_df`, `max_df`,
//! `max_features`, `binary`) and the tokenize-once corpus they work on.
//!
//! A [`TermCounts`] holds every document of a corpus as sorted
//! `(term, occurrences)` pairs over one alphabetical term list, so the
//! vocabulary and counts for any subset of documents and any options follow
//! without tokenizing again (cross-validation fits many such combinations).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{tokenizer, ModelError, NbParameters};

/// A document-frequency bound as scikit-learn takes it: an integer is a
/// number of documents, a float in (0, 1] a proportion of the documents.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DfBound {
    /// A document count.
    Count(u64),
    /// A share of the training documents, in (0, 1].
    Proportion(f64),
}

impl DfBound {
    /// Parses `5` as a count and `0.5` / `1.0` / `1e-3` as a proportion (a
    /// number written with a point or exponent), like Python's int/float.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bound = if s.contains(['.', 'e', 'E']) {
            DfBound::Proportion(s.parse().map_err(|_| format!("{s:?} is not a number"))?)
        } else {
            DfBound::Count(
                s.parse()
                    .map_err(|_| format!("{s:?} is not a document count"))?,
            )
        };
        bound.validate().map(|()| bound)
    }

    /// A proportion must lie in (0, 1].
    pub fn validate(self) -> Result<(), String> {
        match self {
            DfBound::Proportion(p) if !(p.is_finite() && p > 0.0 && p <= 1.0) => Err(format!(
                "{p} is not a proportion in (0, 1] (write an integer for a document count)"
            )),
            _ => Ok(()),
        }
    }

    /// scikit-learn's document-count threshold for `n_docs` documents:
    /// `max_df if isinstance(max_df, Integral) else max_df * n_doc`.
    pub fn doc_count(self, n_docs: usize) -> f64 {
        match self {
            DfBound::Count(c) => c as f64,
            DfBound::Proportion(p) => p * n_docs as f64,
        }
    }
}

impl std::fmt::Display for DfBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DfBound::Count(c) => write!(f, "{c}"),
            DfBound::Proportion(p) => write!(f, "{p:?}"),
        }
    }
}

/// The vocabulary options of `CountVectorizer`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorizerOptions {
    /// Drop terms in fewer documents than this (default 1).
    pub min_df: DfBound,
    /// Drop terms in more documents than this (default 1.0 = all).
    pub max_df: DfBound,
    /// Keep only the most frequent terms; 0 = no limit.
    pub max_features: u64,
    /// Features are presence/absence (`binary=True`), else term counts.
    pub binary: bool,
}

impl Default for VectorizerOptions {
    fn default() -> Self {
        Self {
            min_df: DfBound::Count(1),
            max_df: DfBound::Proportion(1.0),
            max_features: 0,
            binary: true,
        }
    }
}

/// Why a vocabulary cannot be selected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VectorizerError {
    /// scikit-learn's "max_df corresponds to < documents than min_df".
    #[error("max_df {max_df} corresponds to fewer documents ({max_docs}) than min_df {min_df} ({min_docs}) for {n_docs} documents")]
    MaxBelowMin {
        /// The max_df given.
        max_df: DfBound,
        /// The min_df given.
        min_df: DfBound,
        /// max_df as a document count.
        max_docs: f64,
        /// min_df as a document count.
        min_docs: f64,
        /// Training documents.
        n_docs: usize,
    },
    /// Nothing survived pruning.
    #[error("no terms remain after pruning with min_df {min_df}, max_df {max_df} ({n_docs} documents); try a lower min_df or a higher max_df")]
    EmptyVocabulary {
        /// The min_df given.
        min_df: DfBound,
        /// The max_df given.
        max_df: DfBound,
        /// Training documents.
        n_docs: usize,
    },
    /// A bound out of range.
    #[error("{0}")]
    Invalid(String),
}

/// A tokenized corpus: each document as `(term index, occurrences)` pairs,
/// ascending, over one sorted term list.
#[derive(Debug, Clone)]
pub struct TermCounts {
    terms: Vec<String>,
    docs: Vec<Vec<(u32, u32)>>,
}

impl TermCounts {
    /// Tokenizes every text once. `progress(done, total)` is called every
    /// 1,000 documents and at the end.
    pub fn tokenize<S: AsRef<str>>(texts: &[S], mut progress: impl FnMut(usize, usize)) -> Self {
        let total = texts.len();
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut first_seen: Vec<String> = Vec::new();
        let mut buf = String::new();
        let mut tokens: Vec<u32> = Vec::new();
        let mut docs: Vec<Vec<(u32, u32)>> = Vec::with_capacity(total);
        for (i, text) in texts.iter().enumerate() {
            tokenizer::lowercase_into(text.as_ref(), &mut buf);
            tokens.clear();
            tokenizer::for_each_token(&buf, |t| {
                let id = match ids.get(t) {
                    Some(&id) => id,
                    None => {
                        let id = first_seen.len() as u32;
                        ids.insert(t.to_owned(), id);
                        first_seen.push(t.to_owned());
                        id
                    }
                };
                tokens.push(id);
            });
            docs.push(run_lengths(&mut tokens));
            if (i + 1) % 1000 == 0 {
                progress(i + 1, total);
            }
        }
        progress(total, total);
        drop(ids);
        // Renumber in code-point order, as scikit-learn sorts feature names.
        let mut order: Vec<u32> = (0..first_seen.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| first_seen[a as usize].cmp(&first_seen[b as usize]));
        let mut rank = vec![0u32; order.len()];
        for (r, &id) in order.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        let mut slots: Vec<Option<String>> = first_seen.into_iter().map(Some).collect();
        let terms: Vec<String> = order
            .iter()
            .map(|&id| slots[id as usize].take().expect("each id once"))
            .collect();
        for doc in &mut docs {
            for entry in doc.iter_mut() {
                entry.0 = rank[entry.0 as usize];
            }
            doc.sort_unstable_by_key(|e| e.0);
        }
        Self { terms, docs }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True without documents.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The sorted term list (every term of every document).
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// Document `i` as ascending `(term index, occurrences)` pairs.
    pub fn doc(&self, i: usize) -> &[(u32, u32)] {
        &self.docs[i]
    }

    /// Counts the documents `rows` (labels `labels[row]`).
    pub fn stats(&self, rows: &[usize], labels: &[usize], n_classes: usize) -> TermStats {
        let n_terms = self.terms.len();
        let mut s = TermStats {
            n_docs: rows.len(),
            class_docs: vec![0; n_classes],
            df: vec![0; n_terms],
            tf: vec![0; n_terms],
            class_df: vec![vec![0; n_terms]; n_classes],
            class_tf: vec![vec![0; n_terms]; n_classes],
        };
        for &r in rows {
            let c = labels[r];
            s.class_docs[c] += 1;
            for &(t, n) in &self.docs[r] {
                let t = t as usize;
                s.df[t] += 1;
                s.tf[t] += u64::from(n);
                s.class_df[c][t] += 1;
                s.class_tf[c][t] += u64::from(n);
            }
        }
        s
    }
}

/// Sorts `tokens` and turns it into `(token, run length)` pairs.
fn run_lengths(tokens: &mut [u32]) -> Vec<(u32, u32)> {
    tokens.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &t in tokens.iter() {
        match out.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => out.push((t, 1)),
        }
    }
    out
}

/// Per-term document and occurrence counts of a set of documents, overall
/// and per class.
#[derive(Debug, Clone, PartialEq)]
pub struct TermStats {
    n_docs: usize,
    class_docs: Vec<u64>,
    df: Vec<u64>,
    tf: Vec<u64>,
    class_df: Vec<Vec<u64>>,
    class_tf: Vec<Vec<u64>>,
}

impl TermStats {
    /// The statistics of documents counted per class: `class_df[c][t]`
    /// documents of class `c` hold term `t`, `class_tf[c][t]` times in all.
    pub(super) fn from_class_counts(
        class_docs: Vec<u64>,
        class_df: Vec<Vec<u64>>,
        class_tf: Vec<Vec<u64>>,
    ) -> Self {
        let n_terms = class_df.first().map_or(0, Vec::len);
        let total = |rows: &[Vec<u64>]| -> Vec<u64> {
            (0..n_terms)
                .map(|t| rows.iter().map(|r| r[t]).sum())
                .collect()
        };
        Self {
            n_docs: class_docs.iter().sum::<u64>() as usize,
            df: total(&class_df),
            tf: total(&class_tf),
            class_docs,
            class_df,
            class_tf,
        }
    }

    /// Documents counted.
    pub fn n_docs(&self) -> usize {
        self.n_docs
    }

    /// The term indices `CountVectorizer` would keep, ascending.
    ///
    /// scikit-learn's rule: a term in no document is never a feature; terms
    /// in more than `max_df` or fewer than `min_df` documents are dropped;
    /// then, if more than `max_features` remain, the ones with the largest
    /// corpus-wide count (the document frequency when `binary`) are kept.
    /// Equal counts are broken alphabetically (the earlier term is kept);
    /// scikit-learn's own unstable `argsort` breaks them in an order that
    /// depends on NumPy's sort kernel, so only cuts between distinct counts
    /// are reproducible in both.
    pub fn select(&self, options: &VectorizerOptions) -> Result<Vec<u32>, VectorizerError> {
        for b in [options.min_df, options.max_df] {
            b.validate().map_err(VectorizerError::Invalid)?;
        }
        let max_docs = options.max_df.doc_count(self.n_docs);
        let min_docs = options.min_df.doc_count(self.n_docs);
        if max_docs < min_docs {
            return Err(VectorizerError::MaxBelowMin {
                max_df: options.max_df,
                min_df: options.min_df,
                max_docs,
                min_docs,
                n_docs: self.n_docs,
            });
        }
        let mut kept: Vec<u32> = (0..self.df.len() as u32)
            .filter(|&t| {
                let df = self.df[t as usize];
                df > 0 && (df as f64) <= max_docs && (df as f64) >= min_docs
            })
            .collect();
        let limit = options.max_features as usize;
        if limit > 0 && kept.len() > limit {
            let weight = if options.binary { &self.df } else { &self.tf };
            // Stable: equal weights stay in alphabetical order.
            kept.sort_by(|&a, &b| weight[b as usize].cmp(&weight[a as usize]));
            kept.truncate(limit);
            kept.sort_unstable();
        }
        if kept.is_empty() {
            return Err(VectorizerError::EmptyVocabulary {
                min_df: options.min_df,
                max_df: options.max_df,
                n_docs: self.n_docs,
            });
        }
        Ok(kept)
    }

    /// The fitted counts over the terms `kept` (feature `i` = term
    /// `kept[i]`): documents containing the term when `binary`, else
    /// occurrences.
    pub fn parameters(
        &self,
        kept: &[u32],
        binary: bool,
        alpha: f64,
    ) -> Result<NbParameters, ModelError> {
        super::validate_alpha(alpha)?;
        if self.n_docs == 0 {
            return Err(ModelError::NoDocuments);
        }
        let present = self.class_docs.iter().filter(|&&n| n > 0).count();
        if present < 2 {
            return Err(ModelError::TooFewClasses(present));
        }
        let source = if binary {
            &self.class_df
        } else {
            &self.class_tf
        };
        Ok(NbParameters {
            alpha,
            class_count: self.class_docs.clone(),
            feature_count: source
                .iter()
                .map(|row| kept.iter().map(|&t| row[t as usize]).collect())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> (TermCounts, Vec<usize>) {
        let texts = [
            "aa bb cc cc",    // 0
            "aa bb dd",       // 0
            "aa ee ee ee",    // 1
            "aa bb ff ee",    // 1
            "gg aa bb bb bb", // 1
        ];
        (TermCounts::tokenize(&texts, |_, _| {}), vec![0, 0, 1, 1, 1])
    }

    fn opts(min_df: DfBound, max_df: DfBound, max_features: u64, binary: bool) -> Vec<String> {
        let (c, labels) = corpus();
        let stats = c.stats(&[0, 1, 2, 3, 4], &labels, 2);
        let options = VectorizerOptions {
            min_df,
            max_df,
            max_features,
            binary,
        };
        stats
            .select(&options)
            .unwrap()
            .iter()
            .map(|&t| c.terms()[t as usize].clone())
            .collect()
    }

    #[test]
    fn tokenizes_into_sorted_terms_with_counts() {
        let (c, _) = corpus();
        assert_eq!(c.terms(), ["aa", "bb", "cc", "dd", "ee", "ff", "gg"]);
        assert_eq!(c.doc(0), [(0, 1), (1, 1), (2, 2)]);
        assert_eq!(c.doc(4), [(0, 1), (1, 3), (6, 1)]);
    }

    #[test]
    fn min_df_and_max_df_as_counts_and_proportions() {
        use DfBound::*;
        // df: aa 5, bb 4, cc 1, dd 1, ee 2, ff 1, gg 1
        assert_eq!(opts(Count(2), Proportion(1.0), 0, true), ["aa", "bb", "ee"]);
        assert_eq!(
            opts(Proportion(0.4), Proportion(1.0), 0, true),
            ["aa", "bb", "ee"]
        );
        assert_eq!(
            opts(Count(1), Count(4), 0, true),
            ["bb", "cc", "dd", "ee", "ff", "gg"]
        );
        // 0.8 × 5 = 4 documents: bb (4) stays, aa (5) goes.
        assert_eq!(opts(Count(2), Proportion(0.8), 0, true), ["bb", "ee"]);
    }

    #[test]
    fn max_features_by_document_frequency_or_count_ties_alphabetical() {
        use DfBound::*;
        // binary: aa 5, bb 4, ee 2, then cc/dd/ff/gg 1 (tie: alphabetical).
        assert_eq!(opts(Count(1), Proportion(1.0), 3, true), ["aa", "bb", "ee"]);
        assert_eq!(
            opts(Count(1), Proportion(1.0), 4, true),
            ["aa", "bb", "cc", "ee"]
        );
        // counts: bb 5, aa 5, ee 4, cc 2.
        assert_eq!(
            opts(Count(1), Proportion(1.0), 4, false),
            ["aa", "bb", "cc", "ee"]
        );
        assert_eq!(
            opts(Count(1), Proportion(1.0), 3, false),
            ["aa", "bb", "ee"]
        );
    }

    #[test]
    fn parameters_count_documents_or_occurrences() {
        let (c, labels) = corpus();
        let stats = c.stats(&[0, 1, 2, 3, 4], &labels, 2);
        let kept = [1u32, 4]; // bb, ee
        let p = stats.parameters(&kept, true, 1.0).unwrap();
        assert_eq!(p.class_count, [2, 3]);
        assert_eq!(p.feature_count, [vec![2, 0], vec![2, 2]]);
        let p = stats.parameters(&kept, false, 1.0).unwrap();
        assert_eq!(p.feature_count, [vec![2, 0], vec![4, 4]]);
    }

    #[test]
    fn bad_bounds_and_empty_vocabularies_are_errors() {
        use DfBound::*;
        let (c, labels) = corpus();
        let stats = c.stats(&[0, 1, 2, 3, 4], &labels, 2);
        let o = |min_df, max_df| VectorizerOptions {
            min_df,
            max_df,
            max_features: 0,
            binary: true,
        };
        assert!(matches!(
            stats.select(&o(Count(3), Count(2))),
            Err(VectorizerError::MaxBelowMin { .. })
        ));
        assert!(matches!(
            stats.select(&o(Count(6), Count(9))),
            Err(VectorizerError::EmptyVocabulary { .. })
        ));
        assert!(matches!(
            stats.select(&o(Proportion(1.5), Count(9))),
            Err(VectorizerError::Invalid(_))
        ));
    }

    #[test]
    fn parse_tells_counts_from_proportions() {
        assert_eq!(DfBound::parse("5"), Ok(DfBound::Count(5)));
        assert_eq!(DfBound::parse("1.0"), Ok(DfBound::Proportion(1.0)));
        assert_eq!(DfBound::parse("0.25"), Ok(DfBound::Proportion(0.25)));
        assert!(DfBound::parse("0.0").is_err());
        assert!(DfBound::parse("-1").is_err());
        assert!(DfBound::parse("x").is_err());
        let json = serde_json::to_string(&[DfBound::Count(1), DfBound::Proportion(1.0)]).unwrap();
        assert_eq!(json, "[1,1.0]");
        let back: Vec<DfBound> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, [DfBound::Count(1), DfBound::Proportion(1.0)]);
    }
}
