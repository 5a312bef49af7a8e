//! Term → feature-index lookup.
//!
//! A vocabulary trained on mail has a great many terms. Storing them as one
//! string arena with offsets, and the hash table as small fixed-size slots
//! pointing into it, keeps the whole structure compact with no per-term
//! allocation (a `HashMap<String, u32>` costs a string header, a heap block
//! and a table entry per term), which matters for start-up time and resident
//! memory.
//!
//! Lookups are the hottest code in the server (one per token). A slot
//! carries the term's length and first eight bytes as well as its index, so
//! a term of up to eight bytes (most token occurrences in mail) is confirmed
//! from the slot alone: one cache miss per lookup, no call to `memcmp`, and
//! no visit to the arena, which only longer terms need.
//!
//! The table is open addressing with linear probing, written out here rather
//! than taken from `hashbrown`: it is built once and never changes, so it
//! needs no tombstones, growth or control bytes, and a probe is a load and
//! two compares per slot instead of a group match, a tag compare and a
//! closure call. It is kept at most half full, so an unknown token (a third
//! of the tokens in mail) usually stops at its first or second slot. The
//! hash has a fixed seed: a request can only choose which of the table's
//! runs of occupied slots it probes, and their length is fixed by the
//! vocabulary when the model is loaded.

/// An immutable, sorted vocabulary with O(1) lookup.
#[derive(Clone)]
pub struct Vocabulary {
    arena: String,
    /// `offsets[i]..offsets[i + 1]` is term `i` in `arena`.
    offsets: Vec<u32>,
    /// The hash table: a power-of-two number of slots, at most half of them
    /// used; an unused slot has `len == 0` (terms are never empty).
    slots: Box<[Slot]>,
}

/// A hash-table entry: term `index`, `len` bytes long, starting with the
/// bytes of `prefix` (see [`Key`]); its remaining bytes are in the arena.
#[derive(Clone, Copy, Default)]
struct Slot {
    prefix: u64,
    len: u32,
    index: u32,
}

/// A term prepared for lookup by [`Vocabulary::key`]: its hash and its first
/// eight bytes (little-endian, zero-padded), the part a slot can confirm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Key {
    hash: u64,
    prefix: u64,
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
        // At least twice as many slots as terms: runs of used slots stay
        // short and every probe reaches an unused slot.
        let n_slots = terms
            .len()
            .checked_mul(2)
            .ok_or(VocabularyError::TooLarge)?
            .max(1)
            .next_power_of_two();
        let mut slots = vec![Slot::default(); n_slots].into_boxed_slice();
        let mask = n_slots - 1;
        for (i, term) in terms.iter().enumerate() {
            let term = term.as_ref().as_bytes();
            let key = Self::key(term);
            let mut at = key.hash as usize & mask;
            while slots[at].len != 0 {
                at = (at + 1) & mask;
            }
            slots[at] = Slot {
                prefix: key.prefix,
                len: term.len() as u32,
                index: i as u32,
            };
        }
        Ok(Self {
            arena,
            offsets,
            slots,
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
        let term = term.as_bytes();
        // An unused slot looks like an empty term (prefix 0, length 0), and
        // no term is empty: answered here rather than by a probe that would
        // "find" the first unused slot. (Tokens are never empty, so the
        // serving path, `get_at`, needs no such test.)
        if term.is_empty() {
            return None;
        }
        self.find(term, 0, term.len(), Self::key(term))
    }

    /// The lookup key of `term`: what [`Vocabulary::key_at`] gives for a
    /// term in a padded buffer, read without padding.
    ///
    /// The hash is written out here rather than taken from a `Hasher` crate
    /// because it is built from the eight-byte prefix the slot comparison
    /// needs anyway: each byte is read once, and short terms (most tokens)
    /// take a single multiply-fold with no loop. Its quality only affects
    /// speed: the table is fixed at load time and queries cannot grow it.
    #[inline]
    pub fn key(term: &[u8]) -> Key {
        Self::key_of_chunks(term.len(), |at| load_prefix(&term[at..]))
    }

    /// The key of `buf[start..start + len]` (`len` ≥ 1), for
    /// [`Vocabulary::get_at`]: what [`Vocabulary::key`] gives for those
    /// bytes, read as whole eight-byte loads masked to the term. `buf` must
    /// hold at least [`KEY_PADDING`] bytes past the term's end (a tokenizer
    /// buffer padded with zero bytes): then no load needs a length check or
    /// a byte-wise tail, which reading a term on its own
    /// ([`Vocabulary::key`]) pays for every term whose length is not a
    /// multiple of eight.
    ///
    /// # Panics
    /// When fewer than [`KEY_PADDING`] bytes follow the term in `buf`.
    #[inline]
    pub fn key_at(buf: &[u8], start: usize, len: usize) -> Key {
        debug_assert!(len > 0, "terms are never empty");
        // Bytes `at..at + min(len - at, 8)` of the term, zero-padded as
        // `load_prefix` pads a short chunk.
        Self::key_of_chunks(len, |at| {
            let eight = &buf[start + at..start + at + KEY_PADDING];
            let x = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
            x & (u64::MAX >> (64 - 8 * (len - at).min(8)))
        })
    }

    /// The key of a term of `len` bytes whose bytes `at..at + 8` (fewer at
    /// its end, zero-padded) `chunk(at)` gives: the one hash recipe behind
    /// [`Vocabulary::key`] and [`Vocabulary::key_at`], which differ only in
    /// how they read a chunk.
    #[inline(always)]
    fn key_of_chunks(len: usize, chunk: impl Fn(usize) -> u64) -> Key {
        let prefix = chunk(0);
        let mut hash = fold(prefix ^ SEED, (len as u64) ^ MULTIPLIER);
        let mut at = 8;
        while at < len {
            hash = fold(hash ^ chunk(at), MULTIPLIER);
            at += 8;
        }
        Key { hash, prefix }
    }

    /// The feature index of the term `buf[start..start + len]`, whose key
    /// [`Vocabulary::key_at`] gave: [`Vocabulary::get`] with the key
    /// computed beforehand, so a caller can hash a batch of tokens first.
    #[inline]
    pub fn get_at(&self, buf: &[u8], start: usize, len: usize, key: Key) -> Option<u32> {
        debug_assert_eq!(
            key,
            Self::key(&buf[start..start + len]),
            "key of another term"
        );
        self.find(buf, start, len, key)
    }

    /// Probes from the key's home slot until the term `buf[start..start +
    /// len]` or an unused slot.
    #[inline(always)]
    fn find(&self, buf: &[u8], start: usize, len: usize, key: Key) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut at = key.hash as usize & mask;
        loop {
            let s = self.slots[at];
            if s.prefix == key.prefix
                && s.len as usize == len
                && (len <= 8 || self.same_tail(s.index, buf, start, len))
            {
                return Some(s.index);
            }
            if s.len == 0 {
                return None;
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether term `index` ends as `buf[start..start + len]` does past its
    /// first eight bytes (which the slot confirmed). Out of line: only
    /// terms longer than eight bytes get here, and inlined, the bounds
    /// checks of the slice were computed ahead for every lookup.
    #[inline(never)]
    fn same_tail(&self, index: u32, buf: &[u8], start: usize, len: usize) -> bool {
        same_bytes(self.tail(index), &buf[start + 8..start + len])
    }

    /// Bytes 8.. of term `index` (the part a slot does not hold).
    fn tail(&self, index: u32) -> &[u8] {
        &self.term(index as usize).as_bytes()[8..]
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
            + self.slots.len() * std::mem::size_of::<Slot>()
    }
}

fn term_at<'a>(arena: &'a str, offsets: &[u32], i: usize) -> &'a str {
    &arena[offsets[i] as usize..offsets[i + 1] as usize]
}

/// Bytes a buffer must hold past a term's end for [`Vocabulary::key_at`].
pub const KEY_PADDING: usize = 8;

/// Odd 64-bit constants (from the digits of π) for [`Vocabulary::key`].
const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MULTIPLIER: u64 = 0x1319_8a2e_0370_7345 | 1;

/// Multiplies to 128 bits and folds the halves together: every input bit
/// reaches the low bits of the result, which pick the home slot.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// `a == b` for slices of equal length, eight bytes at a time. Term tails
/// are short (a few bytes past the prefix), where a call into the C
/// library's `memcmp` cost more than the comparison itself.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.chunks(8)
            .zip(b.chunks(8))
            .all(|(x, y)| load_prefix(x) == load_prefix(y))
}

/// The first eight bytes of `bytes` as a little-endian integer, zero-padded.
/// Short inputs are read as two overlapping loads (whose shared bytes agree)
/// instead of a byte loop or a variable-length copy.
#[inline]
fn load_prefix(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if n >= 8 {
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
    } else if n >= 4 {
        let lo = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let hi = u32::from_le_bytes(bytes[n - 4..].try_into().expect("4 bytes"));
        u64::from(lo) | (u64::from(hi) << ((n - 4) * 8))
    } else if n >= 2 {
        let lo = u16::from_le_bytes(bytes[..2].try_into().expect("2 bytes"));
        let hi = u16::from_le_bytes(bytes[n - 2..].try_into().expect("2 bytes"));
        u64::from(lo) | (u64::from(hi) << ((n - 2) * 8))
    } else {
        bytes.first().map_or(0, |&b| u64::from(b))
    }
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
        assert_eq!(v.get(""), None, "an unused slot is not the empty term");
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
    fn prefix_is_the_zero_padded_little_endian_head() {
        for n in 0..=12 {
            let bytes: Vec<u8> = (1..=n as u8).collect();
            let mut padded = [0u8; 8];
            let k = n.min(8);
            padded[..k].copy_from_slice(&bytes[..k]);
            assert_eq!(
                load_prefix(&bytes),
                u64::from_le_bytes(padded),
                "length {n}"
            );
        }
    }

    #[test]
    fn terms_differing_only_past_the_prefix_or_by_trailing_zeros() {
        let terms = ["ab", "ab\0", "ab\0\0\0\0\0\0x", "abcdefgh", "abcdefgh\0"];
        let mut sorted = terms.to_vec();
        sorted.sort_unstable();
        let v = Vocabulary::from_sorted(&sorted).unwrap();
        for t in terms {
            assert_eq!(v.get(t).map(|i| v.term(i as usize)), Some(t), "{t:?}");
        }
        assert_eq!(v.get("ab\0\0"), None);
        assert_eq!(v.get("abcdefgh\0\0"), None);
    }

    #[test]
    fn keys_read_in_a_padded_buffer_are_the_terms_keys() {
        let terms = ["ja", "money_1000", "unsubscribe_now_here", "\u{e9}t\u{e9}"];
        let v = Vocabulary::from_sorted(&terms).unwrap();
        // Terms of every length up to three chunks, at every alignment, the
        // last one right before the padding; bytes past a term are not zero.
        let text = "x ja money_1000 \u{e9}t\u{e9} abcdefghijklmnopqrstuvw unsubscribe_now_here";
        let mut buf = text.as_bytes().to_vec();
        buf.extend_from_slice(&[0; KEY_PADDING]);
        for start in 0..text.len() {
            for len in 1..=(text.len() - start) {
                let term = &text.as_bytes()[start..start + len];
                let key = Vocabulary::key_at(&buf, start, len);
                assert_eq!(key, Vocabulary::key(term), "{start}..{}", start + len);
                let found = v
                    .get_at(&buf, start, len, key)
                    .map(|i| v.term(i as usize).as_bytes());
                assert_eq!(
                    found,
                    terms
                        .contains(&std::str::from_utf8(term).unwrap_or(""))
                        .then_some(term)
                );
            }
        }
    }

    #[test]
    fn the_table_is_at_most_half_full_and_unknown_terms_stop() {
        for n in [0usize, 1, 2, 3, 1000] {
            let terms: Vec<String> = (0..n).map(|i| format!("w{i:04}")).collect();
            let v = Vocabulary::from_sorted(&terms).unwrap();
            assert!(
                v.slots.len().is_power_of_two() && v.slots.len() >= 2 * n,
                "{n}"
            );
            assert_eq!(v.get("absent"), None);
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
