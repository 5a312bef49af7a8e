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

/// True when `c` is a word character in Python's `re` sense.
#[inline]
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    )
}

/// Lowercases `text` into `buf` the way Python's `str.lower` does.
///
/// The ASCII path avoids the allocation that `str::to_lowercase` makes; other
/// text goes through the standard library, which applies the full Unicode
/// mapping including the context-dependent final sigma, as Python does.
pub fn lowercase_into(text: &str, buf: &mut String) {
    buf.clear();
    if text.is_ascii() {
        buf.reserve(text.len());
        buf.extend(text.bytes().map(|b| b.to_ascii_lowercase() as char));
    } else {
        buf.push_str(&text.to_lowercase());
    }
}

/// Calls `f` with every token of an already lowercased text, in order.
pub fn for_each_token<'a>(lowercased: &'a str, mut f: impl FnMut(&'a str)) {
    let bytes = lowercased.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Skip non-word characters.
        let start = loop {
            if i >= bytes.len() {
                return;
            }
            let (c, len) = decode_at(lowercased, i);
            if is_word_char(c) {
                break i;
            }
            i += len;
        };
        let mut chars = 0usize;
        while i < bytes.len() {
            let (c, len) = decode_at(lowercased, i);
            if !is_word_char(c) {
                break;
            }
            chars += 1;
            i += len;
        }
        if chars >= 2 {
            f(&lowercased[start..i]);
        }
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

    #[test]
    fn german_sharp_s_lowercase_is_unchanged() {
        assert_eq!(tokenize("STRAßE"), vec!["straße"]);
    }
}
