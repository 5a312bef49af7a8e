//! Term → feature-index lookup.
//!
//! The shipped vocabulary has about 100k terms. Storing them as one string
//! arena with offsets, and the hash table as small fixed-size slots pointing
//! into it, keeps the whole structure at a few megabytes with no per-term
//! allocation (a `HashMap<String, u32>` costs roughly 3× the memory and one
//! allocation per term), which matters for start-up time and resident memory.
//!
//! Lookups are the hottest code in the server (one per token). A slot carries
//! the term's position and length as well as its index, so a lookup touches
//! the table and the arena only; going through `offsets` first would add a
//! third dependent cache miss per token.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// An immutable, sorted vocabulary with O(1) lookup.
#[derive(Clone)]
pub struct Vocabulary {
    arena: String,
    /// `offsets[i]..offsets[i + 1]` is term `i` in `arena`.
    offsets: Vec<u32>,
    table: HashTable<Slot>,
    hasher: FxBuildHasher,
}

/// A hash-table entry: term `index` is `arena[start..start + len]`.
#[derive(Clone, Copy)]
struct Slot {
    start: u32,
    len: u32,
    index: u32,
}

/// Why a list of terms cannot be a vocabulary.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VocabularyError {
    /// Terms must be strictly increasing (sorted, no duplicates), as scikit-learn stores them.
    #[error("vocabulary is not sorted and unique at term index {0}")]
    NotSorted(usize),
    /// Terms must be non-empty.
    #[error("vocabulary term {0} is empty")]
    EmptyTerm(usize),
    /// The arena is addressed with 32-bit offsets.
    #[error("vocabulary is too large")]
    TooLarge,
}

impl Vocabulary {
    /// Builds a vocabulary from terms that are already sorted and unique.
    pub fn from_sorted<S: AsRef<str>>(terms: &[S]) -> Result<Self, VocabularyError> {
        let total: usize = terms.iter().map(|t| t.as_ref().len()).sum();
        if total > u32::MAX as usize || terms.len() > u32::MAX as usize {
            return Err(VocabularyError::TooLarge);
        }
        let mut arena = String::with_capacity(total);
        let mut offsets = Vec::with_capacity(terms.len() + 1);
        offsets.push(0);
        for (i, term) in terms.iter().enumerate() {
            let term = term.as_ref();
            if term.is_empty() {
                return Err(VocabularyError::EmptyTerm(i));
            }
            if i > 0 && terms[i - 1].as_ref() >= term {
                return Err(VocabularyError::NotSorted(i));
            }
            arena.push_str(term);
            offsets.push(arena.len() as u32);
        }
        let hasher = FxBuildHasher;
        let mut table = HashTable::with_capacity(terms.len());
        for i in 0..terms.len() {
            let slot = Slot {
                start: offsets[i],
                len: offsets[i + 1] - offsets[i],
                index: i as u32,
            };
            let hash = hasher.hash_one(slot_str(&arena, slot));
            table.insert_unique(hash, slot, |&s| hasher.hash_one(slot_str(&arena, s)));
        }
        Ok(Self {
            arena,
            offsets,
            table,
            hasher,
        })
    }

    /// Learns a vocabulary from tokenized documents: every distinct term, sorted
    /// by code point as scikit-learn sorts its feature names.
    pub fn learn<'a>(terms: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all: Vec<&str> = terms.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        Self::from_sorted(&all).expect("sorted, deduplicated, non-empty tokens")
    }

    /// The feature index of `term`, if it is known.
    #[inline]
    pub fn get(&self, term: &str) -> Option<u32> {
        self.get_hashed(term, self.hash(term))
    }

    /// The hash [`Vocabulary::get_hashed`] expects for `term`.
    #[inline]
    pub fn hash(&self, term: &str) -> u64 {
        self.hasher.hash_one(term)
    }

    /// [`Vocabulary::get`] with the hash computed beforehand by [`Vocabulary::hash`].
    #[inline]
    pub fn get_hashed(&self, term: &str, hash: u64) -> Option<u32> {
        let arena = self.arena.as_bytes();
        let term = term.as_bytes();
        self.table
            .find(hash, |s| {
                // Compare bytes, not `str`s: no char-boundary checks on the hot path.
                s.len as usize == term.len()
                    && &arena[s.start as usize..(s.start + s.len) as usize] == term
            })
            .map(|s| s.index)
    }

    /// The term with feature index `index`.
    pub fn term(&self, index: usize) -> &str {
        term_at(&self.arena, &self.offsets, index)
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there are no terms.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All terms in feature-index order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.term(i))
    }

    /// Approximate heap bytes held (for reporting memory use).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.offsets.capacity() * 4
            + self.table.capacity() * (std::mem::size_of::<Slot>() + 1)
    }
}

fn term_at<'a>(arena: &'a str, offsets: &[u32], i: usize) -> &'a str {
    &arena[offsets[i] as usize..offsets[i + 1] as usize]
}

fn slot_str(arena: &str, s: Slot) -> &str {
    &arena[s.start as usize..(s.start + s.len) as usize]
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_sorts_and_deduplicates() {
        let v = Vocabulary::learn(["zeta", "alpha", "zeta", "émile", "beta"]);
        let terms: Vec<&str> = v.iter().collect();
        assert_eq!(terms, vec!["alpha", "beta", "zeta", "émile"]);
        assert_eq!(v.get("zeta"), Some(2));
        assert_eq!(v.get("émile"), Some(3));
        assert_eq!(v.get("gamma"), None);
    }

    #[test]
    fn rejects_unsorted_duplicate_and_empty_terms() {
        assert_eq!(
            Vocabulary::from_sorted(&["b", "a"]).unwrap_err(),
            VocabularyError::NotSorted(1)
        );
        assert_eq!(
            Vocabulary::from_sorted(&["a", "a"]).unwrap_err(),
            VocabularyError::NotSorted(1)
        );
        assert_eq!(
            Vocabulary::from_sorted(&["", "a"]).unwrap_err(),
            VocabularyError::EmptyTerm(0)
        );
    }

    #[test]
    fn terms_sharing_a_prefix_or_length_are_told_apart() {
        let terms = [
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "abcdefghij",
            "abcdefgi",
            "abcdéfgh",
            "longer_than_eight_bytes_a",
            "longer_than_eight_bytes_b",
        ];
        let v = Vocabulary::from_sorted(&terms).unwrap();
        for (i, t) in terms.iter().enumerate() {
            assert_eq!(v.get(t), Some(i as u32), "{t}");
        }
        for absent in [
            "abcdef",
            "abcdefghk",
            "abcdefghijk",
            "longer_than_eight_bytes_c",
            "abcdefgh\0",
        ] {
            assert_eq!(v.get(absent), None, "{absent:?}");
        }
    }

    #[test]
    fn every_term_finds_its_own_index() {
        let terms: Vec<String> = (0..5000).map(|i| format!("t{i:05}")).collect();
        let v = Vocabulary::from_sorted(&terms).unwrap();
        for (i, t) in terms.iter().enumerate() {
            assert_eq!(v.get(t), Some(i as u32));
        }
    }
}
