//! How much memory loading an artifact takes, estimated from its bytes
//! before they are parsed, so a model too large for its host is refused
//! before it is allocated (at start-up, on every reload and poll, and by
//! every command that decides whether a model may be served).
//!
//! A load allocates, in order: the file's bytes; the parsed artifact (every
//! term a `String`, every count a `u64`); the vocabulary (one string arena,
//! offsets and a hash table) beside the parsed terms, which are then freed
//! with the file; the scoring tables beside the parsed counts, which are
//! then freed. The estimate is the largest of those three moments.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

use super::ArtifactError;

/// What loading an artifact costs in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Vocabulary size.
    pub terms: u64,
    /// Classes.
    pub classes: u64,
    /// Bytes held at the worst moment of the load.
    pub peak: u64,
    /// Bytes the loaded model keeps: its vocabulary and scoring tables.
    pub resident: u64,
}

/// Size of a `String` or `Vec` header.
const HEADER: u64 = 24;

/// Bytes the allocator hands out for a request of `len` bytes: glibc's
/// malloc adds an 8-byte header, rounds to 16 and never gives less than 32.
fn heap_block(len: u64) -> u64 {
    (len.saturating_add(8).max(32) + 15) & !15
}

/// Bytes of the vocabulary's hash table for `n` terms: twice as many
/// 16-byte slots, rounded up to a power of two (see the vocabulary).
fn hash_table_bytes(n: u64) -> u64 {
    n.saturating_mul(2)
        .max(1)
        .checked_next_power_of_two()
        .map_or(u64::MAX, |slots| slots.saturating_mul(16))
}

impl MemoryEstimate {
    /// Estimates the load of the artifact `bytes` without allocating for
    /// its content. Fails like a parse would on bytes that are not an
    /// artifact's JSON.
    pub fn of_bytes(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let shape = de
            .deserialize_map(ShapeVisitor)
            .map_err(|e| ArtifactError::Schema(super::clip(e.to_string())))?;
        Ok(shape.estimate(bytes.len() as u64))
    }

    /// Refuses a load that would need more than `max_memory_bytes`.
    pub fn check(bytes: &[u8], max_memory_bytes: u64) -> Result<Self, ArtifactError> {
        let estimate = Self::of_bytes(bytes)?;
        if estimate.peak <= max_memory_bytes {
            return Ok(estimate);
        }
        Err(ArtifactError::TooMuchMemory {
            terms: estimate.terms,
            classes: estimate.classes,
            estimate: estimate.peak,
            max_memory_bytes,
        })
    }
}

/// What the estimate needs to know of a document.
#[derive(Debug, Default)]
struct Shape {
    /// Vocabulary size and the bytes of its terms.
    terms: u64,
    term_bytes: u64,
    /// Classes.
    classes: u64,
    /// The whole parsed document, and its vocabulary's share.
    parsed: u64,
    parsed_terms: u64,
}

impl Shape {
    fn estimate(&self, file_bytes: u64) -> MemoryEstimate {
        let n = self.terms;
        let vocabulary = self
            .term_bytes
            .saturating_add(n.saturating_add(1).saturating_mul(4))
            .saturating_add(hash_table_bytes(n));
        // Per-class deltas, plus each thread's bitset of seen features.
        let tables = n
            .saturating_mul(self.classes)
            .saturating_mul(8)
            .saturating_add(n / 8);
        let without_terms = self.parsed.saturating_sub(self.parsed_terms);
        let peak = file_bytes
            .saturating_add(self.parsed)
            .max(self.parsed.saturating_add(vocabulary))
            .max(
                without_terms
                    .saturating_add(vocabulary)
                    .saturating_add(tables),
            );
        MemoryEstimate {
            terms: n,
            classes: self.classes,
            peak,
            resident: vocabulary.saturating_add(tables),
        }
    }
}

/// The top-level object: every value sized, the vocabulary and the classes
/// counted too.
struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an nbserve artifact")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut shape = Shape::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match key {
                Some(field) => {
                    let strings = map.next_value_seed(StringsSeed)?;
                    shape.parsed = shape.parsed.saturating_add(strings.parsed);
                    if field == "vocabulary" {
                        shape.terms = strings.len;
                        shape.term_bytes = strings.bytes;
                        shape.parsed_terms = strings.parsed;
                    } else {
                        shape.classes = strings.len;
                    }
                }
                None => shape.parsed = shape.parsed.saturating_add(map.next_value_seed(Size)?),
            }
        }
        Ok(shape)
    }
}

/// A key: the field name when it is one the estimate needs.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(["vocabulary", "classes"].into_iter().find(|k| *k == s))
    }
}

/// A list of strings: how many, their bytes, and their parsed size.
#[derive(Default)]
struct Strings {
    len: u64,
    bytes: u64,
    parsed: u64,
}

struct StringsSeed;

impl<'de> DeserializeSeed<'de> for StringsSeed {
    type Value = Strings;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Strings, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for StringsSeed {
    type Value = Strings;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
        let mut s = Strings {
            parsed: HEADER,
            ..Strings::default()
        };
        while let Some(len) = seq.next_element_seed(StrLen)? {
            s.len += 1;
            s.bytes = s.bytes.saturating_add(len);
            s.parsed = s.parsed.saturating_add(HEADER + heap_block(len));
        }
        Ok(s)
    }
}

/// The length of a string.
struct StrLen;

impl<'de> DeserializeSeed<'de> for StrLen {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrLen {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        Ok(s.len() as u64)
    }
}

/// The bytes any JSON value takes once deserialised: a string its header
/// and heap block, a scalar 8 bytes, a list or object a header and its
/// elements (object keys sized as strings, which over-counts struct fields
/// a little).
struct Size;

impl<'de> DeserializeSeed<'de> for Size {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Size {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<u64, E> {
        Ok(8)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<u64, E> {
        Ok(8)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<u64, E> {
        Ok(8)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<u64, E> {
        Ok(8)
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(8)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        Ok(HEADER + heap_block(s.len() as u64))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut total = HEADER;
        while let Some(n) = seq.next_element_seed(Size)? {
            total = total.saturating_add(n);
        }
        Ok(total)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut total = HEADER;
        while let Some(k) = map.next_key_seed(Size)? {
            total = total
                .saturating_add(k)
                .saturating_add(map.next_value_seed(Size)?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample_artifact;
    use super::super::Artifact;
    use super::*;

    #[test]
    fn heap_blocks_and_hash_tables_follow_the_allocators() {
        assert_eq!(heap_block(1), 32);
        assert_eq!(heap_block(24), 32);
        assert_eq!(heap_block(25), 48);
        assert_eq!(heap_block(100), 112);
        assert_eq!(hash_table_bytes(0), 16);
        assert_eq!(hash_table_bytes(3), 8 * 16);
        assert_eq!(hash_table_bytes(4), 8 * 16);
        // Twice 1,000 is 2,000: 2,048 slots.
        assert_eq!(hash_table_bytes(1000), 2048 * 16);
        assert_eq!(hash_table_bytes(1 << 20), (1 << 21) * 16);
        assert_eq!(hash_table_bytes(u64::MAX), u64::MAX);
    }

    #[test]
    fn the_shape_is_read_without_parsing_the_artifact() {
        let a = sample_artifact();
        let bytes = a.to_bytes();
        let e = MemoryEstimate::of_bytes(&bytes).unwrap();
        assert_eq!(e.terms, a.vocabulary.len() as u64);
        assert_eq!(e.classes, 2);
        let term_bytes: u64 = a.vocabulary.iter().map(|t| t.len() as u64).sum();
        let n = e.terms;
        // Arena, offsets, hash table; deltas for 2 classes and the bitset.
        let resident = term_bytes + 4 * (n + 1) + hash_table_bytes(n) + 16 * n + n / 8;
        assert_eq!(e.resident, resident);
        // The file and everything parsed from it are held at once.
        let parsed_terms: u64 = a
            .vocabulary
            .iter()
            .map(|t| 24 + heap_block(t.len() as u64))
            .sum();
        let counts = 2 * n * 8;
        assert!(
            e.peak >= bytes.len() as u64 + parsed_terms + counts,
            "{e:?}"
        );
        assert!(e.peak >= e.resident);
    }

    #[test]
    fn the_estimate_grows_with_terms_classes_and_term_length() {
        let base = sample_artifact();
        let est = |a: &Artifact| MemoryEstimate::of_bytes(&a.to_bytes()).unwrap();
        let mut more_terms = base.clone();
        more_terms
            .vocabulary
            .extend((0..1000).map(|i| format!("zz{i:05}")));
        let mut longer = base.clone();
        longer
            .vocabulary
            .iter_mut()
            .for_each(|t| t.push_str(&"x".repeat(40)));
        let mut more_classes = base.clone();
        more_classes.classes.push("third".into());
        for (what, a) in [
            ("terms", &more_terms),
            ("lengths", &longer),
            ("classes", &more_classes),
        ] {
            assert!(est(a).peak > est(&base).peak, "{what}");
            assert!(est(a).resident > est(&base).resident, "{what}");
        }
    }

    #[test]
    fn bytes_that_are_not_an_artifact_fail_like_a_parse() {
        for bad in [
            &b"[1, 2]"[..],
            b"{\"vocabulary\": [1]}",
            b"{\"classes\": 3}",
            b"{",
        ] {
            assert!(
                matches!(MemoryEstimate::of_bytes(bad), Err(ArtifactError::Schema(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
