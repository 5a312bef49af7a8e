//! The `*.counts` file: a [`Counts`] as bytes, versioned and checksummed.
//!
//! ```text
//! magic      8 bytes   "NBCOUNTS"
//! version    u32 LE    FORMAT_VERSION
//! header     u64 LE length, then JSON: settings, classes, sources,
//!                      documents per [fold][class], number of terms
//! terms      per term, ascending: the length of the prefix it shares with
//!                      the previous term and the rest's length (LEB128
//!                      varints), the rest's UTF-8 bytes, then per fold and
//!                      class its documents and, unless binary, occurrences
//!                      minus documents (varints)
//! checksum   32 bytes  sha256 of everything before it
//! ```
//!
//! Encoding is canonical (one [`Counts`], one byte string), so merging in
//! any order writes the same bytes. Decoding checks the checksum first (a
//! truncated or altered file is named as such), then every invariant the
//! rest of the code relies on: sorted unique classes with documents,
//! sorted unique non-empty terms each counted somewhere, no term in more
//! documents of a class than the class has, totals within 64 bits.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CountSettings, Counts, TOKEN_PATTERN};

/// The first bytes of every counts file.
pub const MAGIC: &[u8; 8] = b"NBCOUNTS";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the checksum at the end.
const CHECKSUM_BYTES: usize = 32;

/// Why bytes are not a usable counts file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    /// Not a counts file at all.
    #[error("not a counts file (it does not start with {:?})", std::str::from_utf8(MAGIC).unwrap_or_default())]
    NotCounts,
    /// Written by another format version.
    #[error("counts format version {found}; this build reads version {FORMAT_VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The content does not match its checksum: cut short or altered.
    #[error("checksum mismatch: the file is truncated or corrupt")]
    Checksum,
    /// The checksum matches but the content breaks the format (a bug in
    /// the writer, or a file forged with a valid checksum).
    #[error("invalid counts: {0}")]
    Invalid(String),
}

/// The JSON header.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    settings: CountSettings,
    classes: Vec<String>,
    sources: Vec<String>,
    /// `[fold][class]`.
    documents: Vec<Vec<u64>>,
    terms: u64,
}

impl Counts {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (folds, c, w) = (self.n_folds(), self.classes.len(), self.width());
        let header = Header {
            settings: self.settings.clone(),
            classes: self.classes.clone(),
            sources: self.sources.clone(),
            documents: (0..folds).map(|f| self.fold_documents(f)).collect(),
            terms: self.terms.len() as u64,
        };
        let json = serde_json::to_vec(&header).expect("a header serialises");
        let mut out = Vec::with_capacity(json.len() + self.terms.len() * (8 + folds * c * w));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        let stride = self.stride();
        let mut previous: &str = "";
        for (t, term) in self.terms.iter().enumerate() {
            let shared = common_prefix(previous, term);
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (term.len() - shared) as u64);
            out.extend_from_slice(&term.as_bytes()[shared..]);
            for cell in self.cells[t * stride..(t + 1) * stride].chunks_exact(w) {
                put_varint(&mut out, cell[0]);
                if w == 2 {
                    put_varint(&mut out, cell[1] - cell[0]);
                }
            }
            previous = term;
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Parses and checks a counts file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Counts, FormatError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(FormatError::NotCounts);
        }
        if bytes.len() < MAGIC.len() + 4 {
            return Err(FormatError::Checksum);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(FormatError::Version { found: version });
        }
        if bytes.len() < 12 + 8 + CHECKSUM_BYTES {
            return Err(FormatError::Checksum);
        }
        let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if Sha256::digest(content).as_slice() != checksum {
            return Err(FormatError::Checksum);
        }
        let mut r = Reader {
            bytes: content,
            at: 12,
        };
        let len = r.fixed_u64()?;
        let json = r.take(usize::try_from(len).map_err(|_| invalid("header length"))?)?;
        let header: Header = serde_json::from_slice(json)
            .map_err(|e| FormatError::Invalid(format!("header: {e}")))?;
        let counts = decode_body(header, &mut r)?;
        if r.at != content.len() {
            return Err(invalid("bytes after the last term"));
        }
        Ok(counts)
    }
}

fn invalid(what: &str) -> FormatError {
    FormatError::Invalid(what.to_owned())
}

/// The terms and their cells, checked against the header.
fn decode_body(header: Header, r: &mut Reader<'_>) -> Result<Counts, FormatError> {
    let Header {
        settings,
        classes,
        sources,
        documents,
        terms: n_terms,
    } = header;
    if settings.token_pattern != TOKEN_PATTERN || !settings.lowercase {
        return Err(FormatError::Invalid(format!(
            "counted with a tokenizer this build does not have (lowercase {}, token pattern {:?})",
            settings.lowercase, settings.token_pattern
        )));
    }
    if let Some(f) = &settings.folds {
        if f.k < 2 {
            return Err(invalid("fewer than 2 folds"));
        }
    }
    let (folds, c, w) = (settings.n_folds(), classes.len(), settings.width());
    if classes.windows(2).any(|p| p[0] >= p[1]) {
        return Err(invalid("classes are not sorted and unique"));
    }
    if sources.windows(2).any(|p| p[0] > p[1]) {
        return Err(invalid("sources are not sorted"));
    }
    if documents.len() != folds || documents.iter().any(|d| d.len() != c) {
        return Err(invalid("documents do not match the folds and classes"));
    }
    let docs: Vec<u64> = documents.into_iter().flatten().collect();
    docs.iter()
        .try_fold(0u64, |a, &b| a.checked_add(b))
        .ok_or_else(|| invalid("documents add up past 2^64"))?;
    if (0..c).any(|class| (0..folds).all(|f| docs[f * c + class] == 0)) {
        return Err(invalid("a class without documents"));
    }
    let stride = folds * c * w;
    // Each term takes at least 2 + stride bytes: a count this large is a lie.
    if n_terms > (r.remaining() / (2 + stride).max(1)) as u64 {
        return Err(invalid("more terms than the file holds"));
    }
    let n_terms = n_terms as usize;
    let mut terms: Vec<String> = Vec::with_capacity(n_terms);
    let mut cells = Vec::with_capacity(n_terms * stride);
    let mut previous: Vec<u8> = Vec::new();
    for t in 0..n_terms {
        let shared = r.varint()? as usize;
        let rest = r.varint()? as usize;
        if shared > previous.len() {
            return Err(FormatError::Invalid(format!(
                "term {t} shares more than the previous term"
            )));
        }
        let mut bytes = previous[..shared].to_vec();
        bytes.extend_from_slice(r.take(rest)?);
        let term = String::from_utf8(bytes)
            .map_err(|_| FormatError::Invalid(format!("term {t} is not UTF-8")))?;
        if term.is_empty() || terms.last().is_some_and(|p| p.as_str() >= term.as_str()) {
            return Err(FormatError::Invalid(format!(
                "term {t} is empty or out of order"
            )));
        }
        let start = cells.len();
        let mut tf_total = vec![0u64; c];
        for f in 0..folds {
            for class in 0..c {
                let df = r.varint()?;
                if df > docs[f * c + class] {
                    return Err(FormatError::Invalid(format!(
                        "term {t} is in more documents than its class has"
                    )));
                }
                cells.push(df);
                let tf = if w == 2 {
                    let tf = df
                        .checked_add(r.varint()?)
                        .ok_or_else(|| invalid("occurrences past 2^64"))?;
                    cells.push(tf);
                    tf
                } else {
                    df
                };
                tf_total[class] = tf_total[class]
                    .checked_add(tf)
                    .ok_or_else(|| invalid("occurrences past 2^64"))?;
            }
        }
        if cells[start..].iter().all(|&x| x == 0) {
            return Err(FormatError::Invalid(format!("term {t} is never counted")));
        }
        previous = term.as_bytes().to_vec();
        terms.push(term);
    }
    Ok(Counts {
        settings,
        classes,
        sources,
        docs,
        terms,
        cells,
    })
}

/// Bytes `a` and `b` share at their start, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Appends `v` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over the content (checksum already verified).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(invalid("cut short"));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn fixed_u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn varint(&mut self) -> Result<u64, FormatError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first().expect("one byte");
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(invalid("a varint past 2^64"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("a varint past 2^64"))
    }
}
