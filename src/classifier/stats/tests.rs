use proptest::prelude::*;

use super::format::FormatError;
use super::*;
use crate::classifier::TermCounts;

/// Labelled rows: a few words from a small alphabet (so terms repeat
/// across documents), some accented, some documents empty.
fn rows() -> impl Strategy<Value = Vec<(String, String)>> {
    let word = prop_oneof![
        "[a-d]{2,3}",
        Just("Éclair".to_owned()),
        Just("éclair".to_owned()),
        Just("x".to_owned()),
        Just("über".to_owned()),
    ];
    let text = proptest::collection::vec(word, 0..6).prop_map(|w| w.join(" "));
    let label = prop_oneof![Just("ham"), Just("spam"), Just("eggs")].prop_map(str::to_owned);
    proptest::collection::vec((text, label), 0..25)
}

fn count(
    rows: &[(String, String)],
    settings: &CountSettings,
    fold: impl Fn(&str) -> usize,
) -> Counts {
    let mut c = Counter::new(settings.clone());
    for (t, l) in rows {
        c.add(t, l, fold(t)).unwrap();
    }
    c.finish(vec![])
}

fn plain(binary: bool) -> CountSettings {
    CountSettings::new(binary, None)
}

fn hashed(k: u32) -> CountSettings {
    CountSettings::new(
        false,
        Some(FoldSpec {
            k,
            by: FoldBy::Hash { seed: 7 },
        }),
    )
}

#[test]
fn counts_documents_and_occurrences_per_class() {
    let rows: Vec<(String, String)> = [("aa bb aa", "spam"), ("bb cc", "ham"), ("aa", "spam")]
        .iter()
        .map(|(t, l)| (t.to_string(), l.to_string()))
        .collect();
    let c = count(&rows, &plain(false), |_| 0);
    assert_eq!(c.classes(), ["ham", "spam"]);
    assert_eq!(c.terms(), ["aa", "bb", "cc"]);
    assert_eq!(c.class_documents(), [1, 2]);
    let s = c.stats(None).unwrap();
    let p = s.parameters(&[0, 1, 2], false, 1.0).unwrap();
    assert_eq!(p.feature_count, [vec![0, 1, 1], vec![3, 1, 0]]);
    let p = s.parameters(&[0, 1, 2], true, 1.0).unwrap();
    assert_eq!(p.feature_count, [vec![0, 1, 1], vec![2, 1, 0]]);
    let b = count(&rows, &plain(true), |_| 0);
    assert_eq!(
        b.stats(None)
            .unwrap()
            .parameters(&[0, 1, 2], true, 1.0)
            .unwrap(),
        p
    );
}

#[test]
fn a_fold_excluded_is_the_total_minus_its_counts() {
    let rows: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("w{} common t{}", i % 7, i % 3),
                ["a", "b"][i % 2].to_string(),
            )
        })
        .collect();
    let k = 3;
    let folded = count(&rows, &hashed(k), |t| hash_fold(7, t, k) as usize);
    let mut unfolded = count(&rows, &plain(false), |_| 0);
    unfolded.set_sources(vec![]);
    assert_eq!(folded.without_folds(), unfolded);
    for f in 0..k as usize {
        let rest: Vec<(String, String)> = rows
            .iter()
            .filter(|(t, _)| hash_fold(7, t, k) as usize != f)
            .cloned()
            .collect();
        let alone = count(&rest, &plain(false), |_| 0);
        // The same statistics over the total's term list: terms only in
        // fold `f` are there with no documents (never selected).
        let mine = folded.stats(Some(f)).unwrap();
        let opts = crate::classifier::VectorizerOptions::default();
        let kept: Vec<&str> = mine
            .select(&opts)
            .unwrap()
            .iter()
            .map(|&t| folded.terms()[t as usize].as_str())
            .collect();
        assert_eq!(kept, alone.terms());
        assert_eq!(mine.n_docs(), rest.len());
    }
    assert_eq!(
        folded.stats(Some(3)).unwrap_err(),
        CountsError::Fold { fold: 3, k: 3 }
    );
}

#[test]
fn the_file_round_trips_and_refuses_damage() {
    let rows: Vec<(String, String)> = [("aa bb aa", "spam"), ("bb cc ünï", "ham"), ("aa", "spam")]
        .iter()
        .map(|(t, l)| (t.to_string(), l.to_string()))
        .collect();
    for settings in [plain(false), plain(true), hashed(2)] {
        let mut c = count(&rows, &settings, |t| {
            hash_fold(7, t, 2) as usize % settings.n_folds()
        });
        c.set_sources(vec!["bb".repeat(32), "aa".repeat(32)]);
        let bytes = c.to_bytes();
        assert_eq!(Counts::from_bytes(&bytes).unwrap(), c);
        // Every single-byte change and every truncation is caught.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(Counts::from_bytes(&bad).is_err(), "byte {i}");
            assert!(Counts::from_bytes(&bytes[..i]).is_err(), "cut at {i}");
        }
    }
    let bytes = count(&rows, &plain(false), |_| 0).to_bytes();
    assert_eq!(
        Counts::from_bytes(&bytes[..bytes.len() - 1]),
        Err(FormatError::Checksum)
    );
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert_eq!(
        Counts::from_bytes(&v2),
        Err(FormatError::Version { found: 2 })
    );
    assert_eq!(
        Counts::from_bytes(b"text,label\n"),
        Err(FormatError::NotCounts)
    );
    let empty = Counts::empty(plain(true));
    assert_eq!(Counts::from_bytes(&empty.to_bytes()).unwrap(), empty);
}

#[test]
fn counts_made_differently_do_not_merge_and_say_how() {
    let rows = vec![("aa bb".to_owned(), "x".to_owned())];
    let a = count(&rows, &plain(false), |_| 0);
    let b = count(&rows, &plain(true), |_| 0);
    let e = a.merge(&b).unwrap_err();
    assert_eq!(
        e.to_string(),
        "counted with different settings: binary: false vs true"
    );
    let f = count(&rows, &hashed(2), |_| 0);
    let e = a.merge(&f).unwrap_err().to_string();
    assert!(
        e.contains("folds: no folds vs 2 folds by text hash, seed 7"),
        "{e}"
    );
}

#[test]
fn subtracting_what_was_never_added_is_refused() {
    let a = count(&[("aa bb".into(), "x".into())], &plain(false), |_| 0);
    let b = count(&[("aa cc".into(), "x".into())], &plain(false), |_| 0);
    let e = a.subtract(&b).unwrap_err().to_string();
    assert!(e.contains("\"cc\""), "{e}");
    let c = count(&[("aa".into(), "y".into())], &plain(false), |_| 0);
    assert!(a.subtract(&c).is_err());
}

proptest! {
    #[test]
    fn the_counter_agrees_with_the_tokenized_corpus(rows in rows(), binary in any::<bool>()) {
        let counts = count(&rows, &plain(binary), |_| 0);
        let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let corpus = TermCounts::tokenize(&texts, |_, _| {});
        prop_assert_eq!(counts.terms(), corpus.terms());
        let labels: Vec<usize> = rows
            .iter()
            .map(|r| counts.classes().binary_search(&r.1).unwrap())
            .collect();
        let all: Vec<usize> = (0..rows.len()).collect();
        let want = corpus.stats(&all, &labels, counts.classes().len());
        let got = counts.stats(None).unwrap();
        if binary {
            // Binary counts report documents as occurrences.
            let kept: Vec<u32> = (0..counts.terms().len() as u32).collect();
            prop_assert_eq!(
                got.parameters(&kept, true, 1.0).ok(),
                want.parameters(&kept, true, 1.0).ok()
            );
        } else {
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn merging_shards_in_any_tree_is_counting_everything_once(
        rows in rows(),
        cuts in proptest::collection::vec(0usize..25, 0..5),
        order in any::<u64>(),
        folds in prop_oneof![Just(None), Just(Some(3u32))],
    ) {
        let settings = folds.map_or(plain(false), hashed);
        let fold = |t: &str| folds.map_or(0, |k| hash_fold(7, t, k) as usize);
        let whole = count(&rows, &settings, fold);
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(rows.len())).collect();
        bounds.push(0);
        bounds.push(rows.len());
        bounds.sort_unstable();
        let mut shards: Vec<Counts> = bounds
            .windows(2)
            .map(|w| count(&rows[w[0]..w[1]], &settings, fold))
            .collect();
        // Any tree: repeatedly merge two shards picked by `order`.
        let mut state = order;
        while shards.len() > 1 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = (state >> 33) as usize % shards.len();
            let a = shards.swap_remove(i);
            let j = (state >> 13) as usize % shards.len();
            let b = shards.swap_remove(j);
            shards.push(if state & 1 == 0 { a.merge(&b).unwrap() } else { b.merge(&a).unwrap() });
        }
        let merged = shards.pop().unwrap();
        prop_assert_eq!(merged.to_bytes(), whole.to_bytes());
        prop_assert_eq!(&merged, &whole);
    }

    #[test]
    fn forgetting_what_was_learned_gives_the_counts_back(
        base in rows(),
        learned in rows(),
    ) {
        let a = count(&base, &plain(false), |_| 0);
        let s = count(&learned, &plain(false), |_| 0);
        let both = a.merge(&s).unwrap();
        let mut all = base.clone();
        all.extend(learned.iter().cloned());
        prop_assert_eq!(&both, &count(&all, &plain(false), |_| 0));
        prop_assert_eq!(both.subtract(&s).unwrap(), a);
    }
}
