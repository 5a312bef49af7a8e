//! Tokenization with scikit-learn `CountVectorizer` semantics.
//!
//! scikit-learn lowercases the whole document (`str.lower`) and then extracts
//! tokens with the pattern `(?u)\b\w\w+\b`. Because `\b` is defined by the same
//! `\w` class, that pattern matches exactly the maximal runs of word characters
//! that are at least two characters long, which is what this scanner yields.
//!
//! Python's `\w` (for `str` patterns) is "alphanumeric per `str.isalnum()`, or
//! underscore": Unicode general categories `L*` and `N*` plus `_`. It is *not*
//! the Unicode `\w` of UTS #18 (which the `regex` crate implements and which
//! also contains combining marks), so a hand-written scanner over general
//! categories is the only way to match scikit-learn token for token.
//!
//! The oracle is scikit-learn on CPython 3.11, whose tables are Unicode 14.0.
//! Rust's tables are newer: characters assigned since then are letters or
//! numbers (and some have lower-case forms) for Rust but unassigned for
//! Python, so they are treated here as Python treats them (see
//! [`super::unicode14`]). Every code point is checked against a dump from
//! Python (tests/data/python-unicode.txt).

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use super::unicode14::UNASSIGNED;

/// True when `c` was not assigned in Unicode 14.0 (CPython 3.11's tables).
#[inline]
fn unassigned_in_python(c: char) -> bool {
    let c = u32::from(c);
    // Everything below the first gap (Greek, U+0378) is assigned.
    if c < UNASSIGNED[0].0 {
        return false;
    }
    let i = UNASSIGNED.partition_point(|&(_, last)| last < c);
    UNASSIGNED.get(i).is_some_and(|&(first, _)| first <= c)
}

/// `ASCII_WORD[b]`: the ASCII byte `b` is a word character (`[0-9A-Za-z_]`),
/// for [`is_word_char`]; the block scanner tests eight bytes at a time instead.
const ASCII_WORD: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

/// True when `c` is a word character in Python's `re` sense.
#[inline]
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return ASCII_WORD[c as usize];
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    ) && !unassigned_in_python(c)
}

/// Lowercases `text` into `buf` the way Python's `str.lower` does.
///
/// ASCII is lowercased in bulk. Other text goes through the standard
/// library, which applies the full Unicode mapping including the
/// context-dependent final sigma, as Python does; but only word by word:
/// after the first non-ASCII character `str::to_lowercase` converts every
/// following character one at a time (a table search each), which made one
/// accented letter in a long e-mail cost more than the rest of its scoring.
/// Splitting at ASCII whitespace cannot change the result: final sigma looks
/// at neighbouring characters only through case-ignorable ones, and
/// whitespace is neither case-ignorable nor cased, so the context ends there
/// in both cases. Only the words that hold non-ASCII bytes are split out;
/// the ASCII stretches between them are copied whole.
pub fn lowercase_into(text: &str, buf: &mut String) {
    buf.clear();
    let bytes = text.as_bytes();
    // `text[..done]` is in `buf`.
    let mut done = 0;
    loop {
        // The ASCII run from `done` is copied lowercased in one pass that
        // also finds where it ends.
        let at = done + push_ascii_lowercase_run(&text[done..], buf);
        if at == bytes.len() {
            return;
        }
        let is_space = |b: &u8| b.is_ascii_whitespace();
        let word_start = bytes[done..at]
            .iter()
            .rposition(is_space)
            .map_or(done, |i| done + i + 1);
        let word_end = bytes[at..]
            .iter()
            .position(is_space)
            .map_or(bytes.len(), |i| at + i);
        // The word's ASCII head goes through the Unicode mapping with the
        // rest of the word (one ASCII byte in `buf` per byte of `text`).
        buf.truncate(buf.len() - (at - word_start));
        push_lowercase(&text[word_start..word_end], buf);
        done = word_end;
    }
}

/// Lowercases the whitespace-free `word` onto `buf`, leaving the characters
/// Python does not know (assigned after Unicode 14.0) as they are. Splitting
/// at those does not change the final-sigma context either: for Python they
/// are neither cased nor case-ignorable, like the end of the word.
fn push_lowercase(word: &str, buf: &mut String) {
    let mut rest = word;
    while let Some((at, c)) = rest.char_indices().find(|&(_, c)| unassigned_in_python(c)) {
        buf.push_str(&rest[..at].to_lowercase());
        buf.push(c);
        rest = &rest[at + c.len_utf8()..];
    }
    buf.push_str(&rest.to_lowercase());
}

/// Appends the ASCII head of `text` (up to its first non-ASCII byte)
/// lowercased to `buf` and returns its length: finding where the head ends,
/// copying it and lowercasing the copy in one pass, sixteen bytes at a time
/// with SSE2 (see [`sse2::push_ascii_lowercase`]). The head of a mail is
/// usually the whole mail.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn push_ascii_lowercase_run(text: &str, buf: &mut String) -> usize {
    // SAFETY: the function only requires SSE2, which this build enables
    // (the `cfg` above; it is part of the x86-64 baseline).
    unsafe { sse2::push_ascii_lowercase(text, buf) }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn push_ascii_lowercase_run(text: &str, buf: &mut String) -> usize {
    push_ascii_lowercase_run_swar(text, buf)
}

/// [`push_ascii_lowercase_run`] eight bytes at a time: the portable
/// version, and the reference the SSE2 one is tested against.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn push_ascii_lowercase_run_swar(text: &str, buf: &mut String) -> usize {
    let bytes = text.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut n = chunks
        .by_ref()
        .position(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes")) & LANE_HIGH != 0)
        .unwrap_or(bytes.len() / 8)
        * 8;
    n += bytes[n..]
        .iter()
        .position(|&b| b >= 0x80)
        .unwrap_or(bytes.len() - n);
    let start = buf.len();
    buf.push_str(&text[..n]);
    buf[start..].make_ascii_lowercase();
    n
}

/// Calls `f` with every token of an already lowercased text, in order.
///
/// The text is read in blocks of 64 bytes. For each block a 64-bit mask
/// marks the bytes that belong to word characters (sixteen or eight bytes at
/// a time for ASCII, see [`ascii_word_bits`]; decoded one character at a time only
/// where the block holds non-ASCII bytes), and the token boundaries are the
/// bits where the mask changes. Scanning byte by byte instead costs a table
/// load and a branch per byte and a mispredicted branch at every token edge,
/// which made tokenizing the largest part of scoring a document.
pub fn for_each_token<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    for_each_token_span(text, |start, end| f(&text[start..end]));
}

/// [`for_each_token`] giving each token as its byte range `start..end` in
/// `text`: the serving path hashes tokens straight from its buffer, so it
/// needs no `&str` (whose slicing checks both ends for character boundaries).
///
/// Per block, the bits where a word run starts and the bits where one ends
/// alternate (after the end of a run left open by the block before), so
/// each token is the lowest remaining start paired with the lowest
/// remaining end: two bit scans, with no state to consult per edge.
pub fn for_each_token_span(text: &str, mut f: impl FnMut(usize, usize)) {
    let bytes = text.as_bytes();
    // Start of the word run that reaches the current block's first byte, if any.
    let mut open: Option<usize> = None;
    // Word bits that a multi-byte character spilled into the next block.
    let mut spill = 0u64;
    for (n, block) in bytes.chunks(64).enumerate() {
        let base = n * 64;
        let (mut word, high) = ascii_word_bits(block);
        word |= spill;
        spill = 0;
        if high != 0 {
            let (here, next) = non_ascii_word_bits(text, base, high);
            word |= here;
            spill = next;
        }
        // Bit i of `before`: the byte before i is a word byte.
        let before = (word << 1) | u64::from(open.is_some());
        let starts = word & !before;
        // A run ending at i (byte i is the first past it). In a partial (so
        // final) block the zero bits past the end close the last run.
        let mut ends = !word & before;
        if let Some(start) = open {
            if ends == 0 {
                // The whole block continues the run: no end, hence no start.
                continue;
            }
            emit(text, start, base + ends.trailing_zeros() as usize, &mut f);
            ends &= ends - 1;
        }
        open = if high == 0 {
            // An all-ASCII block: a run of two or more bytes is two or more
            // characters, and the one-byte runs (a start whose next byte is
            // an end) are dropped here in bulk, so each run left that ends
            // in the block is a token with no check. (A run still open at
            // the block's end is checked when it ends.)
            let single = starts & (ends >> 1);
            pair_runs(base, starts & !single, ends & !(single << 1), |s, e| {
                f(s, e)
            })
        } else {
            pair_runs(base, starts, ends, |s, e| emit(text, s, e, &mut f))
        };
    }
    if let Some(start) = open {
        emit(text, start, bytes.len(), &mut f);
    }
}

/// Calls `f(start, end)` for each run of a block, pairing its lowest start
/// with its lowest end; returns the start of a run left open at the block's
/// end. Runs are absolute byte ranges (`base` is the block's offset).
#[inline(always)]
fn pair_runs(
    base: usize,
    mut starts: u64,
    mut ends: u64,
    mut f: impl FnMut(usize, usize),
) -> Option<usize> {
    while starts != 0 {
        let start = base + starts.trailing_zeros() as usize;
        starts &= starts - 1;
        if ends == 0 {
            return Some(start);
        }
        f(start, base + ends.trailing_zeros() as usize);
        ends &= ends - 1;
    }
    None
}

/// Passes `start..end` to `f` if `text[start..end]` is at least two
/// characters long.
#[inline(always)]
fn emit(text: &str, start: usize, end: usize, f: &mut impl FnMut(usize, usize)) {
    let run = &text.as_bytes()[start..end];
    // Two or more bytes are two or more characters when the first or last
    // byte is ASCII (a one-byte character plus at least one more) or when
    // there are 5+ bytes (a character is at most 4); only short non-ASCII
    // runs need their characters counted.
    let two_chars = match run {
        [] | [_] => false,
        [first, .., last] if *first < 0x80 || *last < 0x80 || run.len() >= 5 => true,
        _ => run.iter().filter(|&&b| b & 0xC0 != 0x80).count() >= 2,
    };
    if two_chars {
        f(start, end);
    }
}

/// For a block of at most 64 bytes: (bit i set when byte i is an ASCII word
/// character `[0-9A-Za-z_]`, bit i set when byte i is not ASCII).
#[inline]
fn ascii_word_bits(block: &[u8]) -> (u64, u64) {
    match block.try_into() {
        Ok(full) => block_word_bits(full),
        Err(_) => {
            // Only the text's last block is partial: pad it with zero bytes,
            // which are neither word characters nor non-ASCII.
            let mut padded = [0u8; 64];
            padded[..block.len()].copy_from_slice(block);
            block_word_bits(&padded)
        }
    }
}

/// [`ascii_word_bits`] of a full block with SSE2, which every x86-64 CPU
/// has: sixteen bytes per compare and one `pmovmskb` for their bits, about
/// a quarter of the instructions of [`block_word_bits_swar`] (whose answers
/// it must equal, see the tests).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn block_word_bits(full: &[u8; 64]) -> (u64, u64) {
    // SAFETY: `sse2::word_bits` only requires SSE2, which this build
    // enables (the `cfg` above; it is part of the x86-64 baseline).
    unsafe { sse2::word_bits(full) }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
fn block_word_bits(full: &[u8; 64]) -> (u64, u64) {
    block_word_bits_swar(full)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x, _mm_storeu_si128,
    };

    /// (word bits, non-ASCII bits) of a 64-byte block, sixteen bytes at a
    /// time. Bytes ≥ 0x80 are negative as `i8`, so the signed range
    /// compares leave them out of the word bits; their sign bits are the
    /// non-ASCII bits.
    #[target_feature(enable = "sse2")]
    pub(super) fn word_bits(full: &[u8; 64]) -> (u64, u64) {
        let splat = |b: u8| _mm_set1_epi8(b as i8);
        let (mut word, mut high) = (0u64, 0u64);
        for (i, sixteen) in full.chunks_exact(16).enumerate() {
            let half =
                |at: usize| i64::from_le_bytes(sixteen[at..at + 8].try_into().expect("8 bytes"));
            let v = _mm_set_epi64x(half(8), half(0));
            let in_range = |v, lo: u8, hi: u8| {
                _mm_and_si128(
                    _mm_cmpgt_epi8(v, splat(lo - 1)),
                    _mm_cmplt_epi8(v, splat(hi + 1)),
                )
            };
            // ASCII letters to lower case (digits and `_` are tested unfolded).
            let letter = in_range(_mm_or_si128(v, splat(0x20)), b'a', b'z');
            let digit = in_range(v, b'0', b'9');
            let underscore = _mm_cmpeq_epi8(v, splat(b'_'));
            let w = _mm_or_si128(_mm_or_si128(letter, digit), underscore);
            word |= u64::from(_mm_movemask_epi8(w) as u16) << (i * 16);
            high |= u64::from(_mm_movemask_epi8(v) as u16) << (i * 16);
        }
        (word, high)
    }

    /// See [`super::push_ascii_lowercase_run`]. ASCII capitals become small
    /// letters by setting bit 5 (0x20) where a byte is in `A..=Z`; bytes
    /// ≥ 0x80 are negative as `i8`, so they are never in that range, and
    /// their sign bits end the run.
    #[target_feature(enable = "sse2")]
    pub(super) fn push_ascii_lowercase(text: &str, buf: &mut String) -> usize {
        let bytes = text.as_bytes();
        let mut chunks = bytes.chunks_exact(16);
        let mut lowered = [0u8; 16];
        let mut n = 0;
        // SAFETY: only ASCII bytes are appended, so `buf` stays UTF-8.
        let out = unsafe { buf.as_mut_vec() };
        out.reserve(bytes.len());
        for sixteen in chunks.by_ref() {
            // SAFETY: `sixteen` is 16 readable bytes; `loadu` takes any alignment.
            let v = unsafe { _mm_loadu_si128(sixteen.as_ptr().cast()) };
            let high = _mm_movemask_epi8(v);
            let capital = _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(b'A' as i8 - 1)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(b'Z' as i8 + 1)),
            );
            let lower = _mm_or_si128(v, _mm_and_si128(capital, _mm_set1_epi8(0x20)));
            // SAFETY: `lowered` is 16 writable bytes; `storeu` takes any alignment.
            unsafe { _mm_storeu_si128(lowered.as_mut_ptr().cast(), lower) };
            if high != 0 {
                let ascii = high.trailing_zeros() as usize;
                out.extend_from_slice(&lowered[..ascii]);
                return n + ascii;
            }
            out.extend_from_slice(&lowered);
            n += 16;
        }
        for &b in chunks.remainder() {
            if b >= 0x80 {
                break;
            }
            out.push(b.to_ascii_lowercase());
            n += 1;
        }
        n
    }
}

/// [`ascii_word_bits`] of a full block, eight bytes at a time in a `u64`
/// ("SIMD within a register"): the portable version, and the reference
/// the SSE2 one is tested against.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn block_word_bits_swar(full: &[u8; 64]) -> (u64, u64) {
    let mut word = 0u64;
    let mut any_high = 0u64;
    for (i, chunk) in full.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        word |= gather_high_bits(ascii_word_lanes(x)) << (i * 8);
        any_high |= x;
    }
    if any_high & LANE_HIGH == 0 {
        return (word, 0);
    }
    // Rare: the block holds non-ASCII bytes; mark them.
    let mut high = 0u64;
    for (i, chunk) in full.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        high |= gather_high_bits(x) << (i * 8);
    }
    (word, high)
}

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
const LANE_HIGH: u64 = 0x8080_8080_8080_8080;
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
const LANE_LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
/// Every byte of the result has its top bit set when that byte of `x` is an
/// ASCII word character; all other bits are zero.
#[inline]
fn ascii_word_lanes(x: u64) -> u64 {
    let splat = |b: u8| u64::from(b) * 0x0101_0101_0101_0101;
    // With the top bits cleared every lane is ≤ 0x7f, so adding ≤ 0x80 never
    // carries into the next lane, and the lane's top bit says `y ≥ lo`.
    let y = x & LANE_LOW7;
    let at_least = |v: u64, lo: u8| v + splat(0x80 - lo);
    let digit = at_least(y, b'0') & !at_least(y, b'9' + 1);
    let folded = y | splat(0x20); // ASCII letters to lower case
    let letter = at_least(folded, b'a') & !at_least(folded, b'z' + 1);
    let not_underscore = (y ^ splat(b'_')) + LANE_LOW7;
    (digit | letter | !not_underscore) & !x & LANE_HIGH
}

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
/// Packs the top bit of each byte of `lanes` into 8 bits (byte i → bit i).
#[inline]
fn gather_high_bits(lanes: u64) -> u64 {
    // Byte i's top bit, shifted to bit 8i, is multiplied onto bit 56 + i;
    // all the partial products land on distinct bits, so nothing carries.
    (((lanes & LANE_HIGH) >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Word bits for the non-ASCII characters of the 64-byte block starting at
/// `text[base]`, whose non-ASCII bytes are marked in `high`: (bits in this
/// block, bits that a character crossing into the next block sets there).
#[cold]
fn non_ascii_word_bits(text: &str, base: usize, mut high: u64) -> (u64, u64) {
    let bytes = text.as_bytes();
    let (mut here, mut next) = (0u64, 0u64);
    while high != 0 {
        let i = high.trailing_zeros() as usize;
        high &= high - 1;
        // Continuation bytes were set (or not) with the byte that leads them.
        if bytes[base + i] & 0xC0 != 0xC0 {
            continue;
        }
        let c = text[base + i..].chars().next().expect("a char starts here");
        if is_word_char(c) {
            let n = c.len_utf8();
            // Bits i..i + n: the character's bytes, possibly past this block.
            let bits = (1u128 << n) - 1;
            let placed = bits << i;
            here |= placed as u64;
            next |= (placed >> 64) as u64;
        }
    }
    (here, next)
}

/// Lowercases and tokenizes `text`, returning owned tokens (convenient for
/// training and tests; the serving path uses [`for_each_token_span`] on a
/// reused buffer instead).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut buf = String::new();
    lowercase_into(text, &mut buf);
    let mut out = Vec::new();
    for_each_token(&buf, |t| out.push(t.to_owned()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of one, two and three characters at every offset around the
    /// first two block edges, in all-ASCII blocks (where one-byte runs are
    /// dropped in bulk) and with a non-ASCII character in the block (where
    /// each run's characters are counted).
    #[test]
    fn short_runs_at_every_offset_across_block_edges() {
        for other in ["", " é"] {
            for at in 0..140 {
                for run in ["a", "ab", "abc", "é", "éa", "a_"] {
                    let text = format!("{}{run} x yz{other}{}", " ".repeat(at), " ".repeat(at % 7));
                    assert_eq!(
                        block_tokens(&text),
                        reference_tokens(&text),
                        "{run:?} at {at} {other:?}"
                    );
                    assert_eq!(tokenize(&text), regex_tokens(&text), "{run:?} at {at}");
                }
            }
        }
    }

    #[test]
    fn ascii_words_of_two_or_more_chars() {
        assert_eq!(tokenize("A cat, a DOG & I!"), vec!["cat", "dog"]);
    }

    #[test]
    fn digits_and_underscores_are_word_chars() {
        assert_eq!(
            tokenize("win $1000 now_now x1 9"),
            vec!["win", "1000", "now_now", "x1"]
        );
    }

    #[test]
    fn apostrophes_and_hyphens_split_tokens() {
        assert_eq!(
            tokenize("don't re-enter it's"),
            vec!["don", "re", "enter", "it"]
        );
    }

    #[test]
    fn accents_precomposed_stay_in_token() {
        assert_eq!(tokenize("Café ÉLAN"), vec!["café", "élan"]);
    }

    #[test]
    fn combining_marks_break_tokens_like_python() {
        // "e" + U+0301 (a combining mark, category Mn) is not a word char for Python.
        assert_eq!(tokenize("cafe\u{301}s ab"), vec!["cafe", "ab"]);
        // Devanagari virama and vowel signs are marks too: "नमस्ते" splits
        // at them into "नमस" and "त" (one character, dropped); Python gives
        // re.findall(r"(?u)\b\w\w+\b", "नमस्ते") == ["नमस"].
        assert_eq!(tokenize("नमस्ते"), vec!["नमस"]);
    }

    #[test]
    fn non_latin_scripts() {
        assert_eq!(
            tokenize("Привет мир 你好 世界"),
            vec!["привет", "мир", "你好", "世界"]
        );
        assert_eq!(tokenize("مرحبا بالعالم"), vec!["مرحبا", "بالعالم"]);
    }

    #[test]
    fn greek_final_sigma_lowercases_in_context() {
        assert_eq!(tokenize("ΟΔΟΣ"), vec!["οδος"]);
    }

    #[test]
    fn turkish_dotted_capital_i_splits_on_combining_dot() {
        // Python: "İx".lower() == "i̇x" (i + U+0307) and U+0307 is not \w.
        assert_eq!(tokenize("İstanbul"), vec!["stanbul"]);
    }

    #[test]
    fn emoji_and_symbols_are_separators() {
        assert_eq!(tokenize("hi👋there 🎉🎉 ok"), vec!["hi", "there", "ok"]);
    }

    #[test]
    fn number_forms_are_word_chars() {
        // Superscripts and vulgar fractions are category No.
        assert_eq!(tokenize("x² ½½"), vec!["x²", "½½"]);
    }

    #[test]
    fn empty_and_whitespace_only() {
        assert!(tokenize("").is_empty());
        assert!(tokenize(" \t\n ").is_empty());
        assert!(tokenize("a b c").is_empty());
    }

    /// `\w` membership and `str.lower()` of every code point in CPython 3.11
    /// (Unicode 14.0), as dumped by tests/parity/unicode_table.py.
    struct PythonUnicode {
        word: Vec<bool>,
        lower: std::collections::HashMap<u32, String>,
    }

    fn python_unicode() -> PythonUnicode {
        let table = include_str!("../../tests/data/python-unicode.txt");
        let header = table.lines().next().unwrap();
        assert!(
            header.starts_with("# python 3.11.")
                && header.ends_with(&format!("unicode {}", super::super::unicode14::UNICODE_VERSION)),
            "tests/data/python-unicode.txt must come from CPython 3.11, as src/classifier/unicode14.rs: {header}"
        );
        let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
        let mut word = vec![false; 0x11_0000];
        let mut lower = std::collections::HashMap::new();
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "W" => word[hex(f[1]) as usize..=hex(f[2]) as usize].fill(true),
                "L" => {
                    let (first, last) = (hex(f[1]), hex(f[2]));
                    let step: usize = f[3].parse().unwrap();
                    let delta: i64 = f[4].parse().unwrap();
                    for cp in (first..=last).step_by(step) {
                        let to = char::from_u32((i64::from(cp) + delta) as u32).unwrap();
                        lower.insert(cp, to.to_string());
                    }
                }
                "M" => {
                    let to = f[2..].iter().map(|h| char::from_u32(hex(h)).unwrap());
                    lower.insert(hex(f[1]), to.collect());
                }
                other => panic!("unknown record {other:?}"),
            }
        }
        PythonUnicode { word, lower }
    }

    fn python_unicode_cached() -> &'static PythonUnicode {
        static TABLE: std::sync::OnceLock<PythonUnicode> = std::sync::OnceLock::new();
        TABLE.get_or_init(python_unicode)
    }

    /// Every code point (as `char`s: surrogates excluded) for which `differs` holds.
    fn code_points_where(mut differs: impl FnMut(char) -> bool) -> Vec<u32> {
        (0..=0x10_FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| differs(c))
            .map(u32::from)
            .collect()
    }

    /// Code points as compact ranges, for failure messages.
    fn ranges(cps: &[u32]) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < cps.len() {
            let mut j = i;
            while j + 1 < cps.len() && cps[j + 1] == cps[j] + 1 {
                j += 1;
            }
            out.push(if i == j {
                format!("{:04X}", cps[i])
            } else {
                format!("{:04X}..{:04X}", cps[i], cps[j])
            });
            i = j + 1;
        }
        format!("{} code points: {}", cps.len(), out.join(" "))
    }

    #[test]
    fn every_code_point_is_a_word_char_exactly_as_in_python_3_11() {
        let py = python_unicode();
        let differ = code_points_where(|c| is_word_char(c) != py.word[c as usize]);
        assert!(
            differ.is_empty(),
            "\\w differs from Python for {}",
            ranges(&differ)
        );
        // The scanner agrees too: a word character doubled is one token,
        // any other character doubled is none.
        for c in (0..=0x10_FFFFu32).filter_map(char::from_u32) {
            let doubled: String = [c, c].iter().collect();
            let mut tokens = Vec::new();
            for_each_token(&doubled, |t| tokens.push(t));
            let want: Vec<&str> = if py.word[c as usize] {
                vec![&doubled]
            } else {
                vec![]
            };
            assert_eq!(tokens, want, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn every_code_point_lowercases_exactly_as_in_python_3_11() {
        let py = python_unicode();
        let mut buf = String::new();
        let differ = code_points_where(|c| {
            lowercase_into(c.encode_utf8(&mut [0; 4]), &mut buf);
            let want = py.lower.get(&u32::from(c));
            buf != want.map_or_else(|| c.to_string(), Clone::clone)
        });
        assert!(
            differ.is_empty(),
            "lower() differs from Python for {}",
            ranges(&differ)
        );
    }

    /// The straightforward character-by-character scanner: the reference
    /// the block scanner must agree with. It shares [`is_word_char`], so
    /// these tests check the block logic; agreement with Python's `\w` is
    /// checked against scikit-learn itself by `scripts/parity.sh`.
    fn reference_tokens(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut run: Option<(usize, usize)> = None; // (start byte, chars)
        for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
            match (is_word_char(c) && i < text.len(), run) {
                (true, Some((start, n))) => run = Some((start, n + 1)),
                (true, None) => run = Some((i, 1)),
                (false, Some((start, n))) => {
                    if n >= 2 {
                        out.push(&text[start..i]);
                    }
                    run = None;
                }
                (false, None) => {}
            }
        }
        out
    }

    fn block_tokens(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for_each_token(text, |t| out.push(t));
        out
    }

    #[test]
    fn tokens_across_block_boundaries() {
        // Runs that end at, start at, straddle and span whole 64-byte blocks,
        // with multi-byte characters split by the block edge.
        let mut cases = vec![
            "a".repeat(64),
            "a".repeat(65),
            format!("{} b", "a".repeat(63)),
            format!("{}é{}", "x".repeat(63), "y".repeat(70)),
            format!("{}€x {}", "x".repeat(62), "€".repeat(40)),
            format!("{}😀ab", "x".repeat(62)),
            format!("{}ab", " ".repeat(63)),
            format!("{}é", " ".repeat(63)),
            format!("{}\u{301}ab", "a".repeat(63)),
            "z".repeat(200),
        ];
        cases.push(cases.concat());
        for text in &cases {
            assert_eq!(block_tokens(text), reference_tokens(text), "{text:?}");
        }
    }

    /// Blocks of bytes drawn from word characters, their neighbours in the
    /// byte table, and non-ASCII bytes.
    fn check_block_against_swar(block: &[u8; 64]) {
        let (word, high) = block_word_bits(block);
        assert_eq!((word, high), block_word_bits_swar(block), "{block:?}");
        for (i, &b) in block.iter().enumerate() {
            assert_eq!(word >> i & 1 == 1, b < 0x80 && ASCII_WORD[b as usize]);
            assert_eq!(high >> i & 1 == 1, b >= 0x80);
        }
    }

    #[test]
    fn block_word_bits_match_the_portable_version_for_every_byte() {
        for b in 0..=255u8 {
            let mut block = [b' '; 64];
            for (i, x) in block.iter_mut().enumerate() {
                if i % 3 != 1 {
                    *x = b.wrapping_add(i as u8 / 3);
                }
            }
            check_block_against_swar(&block);
        }
    }

    proptest::proptest! {
        #[test]
        fn block_word_bits_match_the_portable_version(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"/09:@AZ[^_`az{\x7f\x80\xbf\xc3\xff azAZ09_-".to_vec()),
                64,
            )
        ) {
            check_block_against_swar(&bytes.try_into().unwrap());
        }
    }

    #[test]
    fn word_lanes_match_the_byte_table() {
        for b in 0..=255u8 {
            let x = u64::from(b) << 24 | 0x0020_0041;
            let lanes = ascii_word_lanes(x);
            let expected = b < 0x80 && ASCII_WORD[b as usize];
            assert_eq!(lanes >> 31 & 1 == 1, expected, "byte {b:#04x}");
            assert_eq!(
                gather_high_bits(lanes),
                if expected { 0b1001 } else { 0b0001 }
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn ascii_runs_are_copied_lowercased_up_to_the_first_non_ascii_byte(
            chars in proptest::collection::vec(
                proptest::sample::select(vec!['A', 'Z', 'a', 'z', '@', '[', '`', '{', ' ', '0', 'é', '€', '\u{7f}']),
                0..80,
            )
        ) {
            let text: String = chars.into_iter().collect();
            let head = text.bytes().position(|b| b >= 0x80).unwrap_or(text.len());
            let want = format!("kept{}", text[..head].to_ascii_lowercase());
            for copy in [push_ascii_lowercase_run, push_ascii_lowercase_run_swar] {
                let mut buf = String::from("kept");
                proptest::prop_assert_eq!(copy(&text, &mut buf), head);
                proptest::prop_assert_eq!(&buf, &want);
            }
        }
    }

    fn lower(text: &str) -> String {
        let mut buf = String::from("stale contents");
        lowercase_into(text, &mut buf);
        buf
    }

    #[test]
    fn lowercase_matches_std_including_final_sigma_across_words() {
        for text in [
            "ΟΔΟΣ ΟΔΟΣ. ΟΔΟΣ\tΣ Σ'Σ AΣ\u{301} x",
            "Hello WORLD\r\nÉCOLE Straße İstanbul ΣΑΣ's",
            "mixed ASCII then Ünïcödé then ASCII AGAIN",
            " leading and trailing spaces ÀÉ ",
        ] {
            assert_eq!(lower(text), text.to_lowercase(), "{text:?}");
        }
    }

    /// An oracle that shares no code with the tokenizer: the `regex` crate's
    /// Unicode tables. Python's `str` `\w` is `[\p{L}\p{N}_]` (see the module
    /// comment), so scikit-learn's tokens are the runs of two or more of
    /// those in the lowercased text. Those tables are newer than CPython
    /// 3.11's Unicode 14.0, so the oracle holds only for text without
    /// characters assigned since ([`known_to_python`]); for those the dump
    /// from Python decides (`every_code_point_*`).
    fn regex_tokens(text: &str) -> Vec<String> {
        static WORDS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let words = WORDS.get_or_init(|| regex::Regex::new(r"[\p{L}\p{N}_]{2,}").unwrap());
        words
            .find_iter(&text.to_lowercase())
            .map(|m| m.as_str().to_owned())
            .collect()
    }

    #[test]
    fn the_regex_oracle_sees_what_the_module_comment_says() {
        // Combining marks are in the regex crate's `\w` but not in Python's.
        assert_eq!(regex_tokens("CAFE\u{301}S ab"), vec!["cafe", "ab"]);
        assert_eq!(tokenize("CAFE\u{301}S ab"), regex_tokens("CAFE\u{301}S ab"));
    }

    /// `text` without the characters CPython 3.11 does not know.
    fn known_to_python(text: &str) -> String {
        text.chars().filter(|&c| !unassigned_in_python(c)).collect()
    }

    proptest::proptest! {
        #[test]
        fn tokenize_matches_the_regex_oracle(text in "\\PC{0,300}") {
            let text = known_to_python(&text);
            proptest::prop_assert_eq!(tokenize(&text), regex_tokens(&text));
        }

        #[test]
        fn tokenize_matches_the_regex_oracle_on_mail_like_text(
            text in "([a-zA-Z0-9_ .,:;!@<>/=\n-]{0,90}[éß€😀\u{301}ΣİK½٣]?){0,12}"
        ) {
            proptest::prop_assert_eq!(tokenize(&text), regex_tokens(&text));
        }

        #[test]
        fn block_scanner_matches_the_reference(text in ".{0,300}") {
            proptest::prop_assert_eq!(block_tokens(&text), reference_tokens(&text));
        }

        #[test]
        fn block_scanner_matches_on_mail_like_text(
            text in "([a-zA-Z0-9_ .,:;!@<>/=\n-]{0,90}[éß€😀\u{301}Σ½]?){0,12}"
        ) {
            proptest::prop_assert_eq!(block_tokens(&text), reference_tokens(&text));
        }

        #[test]
        fn lowercase_into_is_str_to_lowercase(text in ".*") {
            // For the characters Python knows; the others stay as they are
            // (every_code_point_lowercases_exactly_as_in_python_3_11).
            let text = known_to_python(&text);
            proptest::prop_assert_eq!(lower(&text), text.to_lowercase());
        }

        /// Tokens against Python's `\w` as dumped from CPython 3.11: the
        /// maximal runs of two or more word characters of the lowercased text.
        #[test]
        fn tokens_are_the_runs_of_python_word_chars(text in ".{0,200}") {
            let py = python_unicode_cached();
            let lowered = lower(&text);
            let mut want = Vec::new();
            let mut run = String::new();
            for c in lowered.chars().chain(['\0']) {
                if py.word[c as usize] {
                    run.push(c);
                } else {
                    if run.chars().count() >= 2 {
                        want.push(run.clone());
                    }
                    run.clear();
                }
            }
            proptest::prop_assert_eq!(tokenize(&text), want);
        }

        #[test]
        fn lowercase_into_agrees_on_mixed_text(text in "([a-zA-Z .\t\n]{0,20}[ÀÉΣİß€😀]?){0,10}") {
            proptest::prop_assert_eq!(lower(&text), text.to_lowercase());
        }

        #[test]
        fn lowercase_into_agrees_on_sigma_heavy_text(text in "[ΣσςΑαaA \t\n'.:\u{301}\u{ad}İ]{0,40}") {
            proptest::prop_assert_eq!(lower(&text), text.to_lowercase());
        }
    }

    #[test]
    fn german_sharp_s_lowercase_is_unchanged() {
        assert_eq!(tokenize("STRAßE"), vec!["straße"]);
    }
}
