//! Fitting: the vocabulary and the per-class counts learnt from labelled texts.

use super::{tokenizer, validate_alpha, ModelError, NbParameters, Vocabulary};

/// Learns the vocabulary and counts from texts with label indices.
///
/// `progress(done, total)` is called every 1,000 documents and at the end.
pub fn fit<S: AsRef<str>>(
    texts: &[S],
    labels: &[usize],
    n_classes: usize,
    alpha: f64,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vocabulary, NbParameters), ModelError> {
    validate_alpha(alpha)?;
    let total = texts.len();
    let mut buf = String::new();
    let docs_tokens: Vec<Vec<String>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if (i + 1) % 1000 == 0 {
                progress(i + 1, total);
            }
            tokenizer::lowercase_into(t.as_ref(), &mut buf);
            let mut toks = Vec::new();
            tokenizer::for_each_token(&buf, |tok| toks.push(tok.to_owned()));
            toks.sort_unstable();
            toks.dedup();
            toks
        })
        .collect();
    progress(total, total);
    let vocabulary = Vocabulary::learn(docs_tokens.iter().flatten().map(String::as_str));
    let docs: Vec<Vec<u32>> = docs_tokens
        .iter()
        .map(|toks| {
            toks.iter()
                .map(|t| vocabulary.get(t).expect("learnt from these tokens"))
                .collect()
        })
        .collect();
    let params = NbParameters::fit(&docs, labels, n_classes, vocabulary.len(), alpha)?;
    Ok((vocabulary, params))
}
