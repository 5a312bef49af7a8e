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

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// `ASCII_WORD[b]`: the ASCII byte `b` is a word character (`[0-9A-Za-z_]`).
/// A table lookup keeps the scanner's common case to one load and one branch.
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
    )
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
/// in both cases.
pub fn lowercase_into(text: &str, buf: &mut String) {
    buf.clear();
    if text.is_ascii() {
        push_ascii_lowercase(text, buf);
        return;
    }
    for word in text.split_inclusive(|c: char| c.is_ascii_whitespace()) {
        if word.is_ascii() {
            push_ascii_lowercase(word, buf);
        } else {
            buf.push_str(&word.to_lowercase());
        }
    }
}

/// Copies ASCII `text` to the end of `buf` and lowercases the copy in place:
/// both are bulk operations, unlike pushing one `char` at a time.
fn push_ascii_lowercase(text: &str, buf: &mut String) {
    let start = buf.len();
    buf.push_str(text);
    buf[start..].make_ascii_lowercase();
}

/// Calls `f` with every token of an already lowercased text, in order.
pub fn for_each_token<'a>(lowercased: &'a str, mut f: impl FnMut(&'a str)) {
    let len = lowercased.len();
    let mut i = 0;
    while i < len {
        // Skip non-word characters.
        let start = loop {
            if i >= len {
                return;
            }
            let (word, n) = classify_at(lowercased, i);
            if word {
                break i;
            }
            i += n;
        };
        let mut chars = 0usize;
        while i < len {
            let (word, n) = classify_at(lowercased, i);
            if !word {
                break;
            }
            chars += 1;
            i += n;
        }
        if chars >= 2 {
            f(&lowercased[start..i]);
        }
    }
}

/// Whether the character at byte `i` is a word character, and its length in
/// bytes; ASCII (the bulk of real text) is one table lookup.
#[inline]
fn classify_at(s: &str, i: usize) -> (bool, usize) {
    let b = s.as_bytes()[i];
    if b < 0x80 {
        (ASCII_WORD[b as usize], 1)
    } else {
        let (c, n) = decode_at(s, i);
        (is_word_char(c), n)
    }
}

/// Decodes the character starting at byte `i`, with a branch-free fast path
/// for ASCII (the bulk of real text).
#[inline]
fn decode_at(s: &str, i: usize) -> (char, usize) {
    let b = s.as_bytes()[i];
    if b < 0x80 {
        (b as char, 1)
    } else {
        // `i` is always on a char boundary: it only advances by whole chars.
        let c = s[i..].chars().next().unwrap_or('\u{FFFD}');
        (c, c.len_utf8())
    }
}

/// Lowercases and tokenizes `text`, returning owned tokens (convenient for
/// training and tests; the serving path uses [`for_each_token`] on a reused
/// buffer instead).
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
        // Devanagari vowel signs are marks too: "नमस्ते" splits at them.
        let toks = tokenize("नमस्ते");
        assert!(toks.iter().all(|t| t.chars().all(is_word_char)));
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

    proptest::proptest! {
        #[test]
        fn lowercase_into_is_str_to_lowercase(text in ".*") {
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
