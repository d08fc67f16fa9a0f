//! Comparing two answers word by word: a similarity score and a word-level diff.

use serde::Serialize;

/// Lower-cased words (letters and digits; CJK characters count one each, so Chinese
/// answers compare sensibly without a segmenter).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF)
}

/// Similarity of two answers in [0, 1]: the Dice coefficient over word bigram multisets
/// (unigrams for one-word answers). 1 means the same words in the same local order; an
/// answer that was softened or made one-sided scores lower even when its label did not change.
pub fn similarity(a: &str, b: &str) -> f64 {
    let (wa, wb) = (words(a), words(b));
    if wa.is_empty() && wb.is_empty() {
        return 1.0;
    }
    let grams = |w: &[String]| -> Vec<String> {
        if w.len() < 2 { w.to_vec() } else { w.windows(2).map(|p| format!("{} {}", p[0], p[1])).collect() }
    };
    let (mut ga, mut gb) = (grams(&wa), grams(&wb));
    ga.sort_unstable();
    gb.sort_unstable();
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < ga.len() && j < gb.len() {
        match ga[i].cmp(&gb[j]) {
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    2.0 * common as f64 / (ga.len() + gb.len()) as f64
}

/// One run of a word diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", content = "text", rename_all = "lowercase")]
pub enum DiffOp {
    Same(String),
    Removed(String),
    Added(String),
}

/// A word-level diff of `a` → `b` (longest common subsequence over whitespace-separated
/// tokens, original spelling kept). Long inputs are cut to keep this quadratic step cheap.
pub fn word_diff(a: &str, b: &str) -> Vec<DiffOp> {
    const MAX: usize = 600;
    let ta: Vec<&str> = a.split_whitespace().take(MAX).collect();
    let tb: Vec<&str> = b.split_whitespace().take(MAX).collect();
    let (n, m) = (ta.len(), tb.len());
    let mut lcs = vec![vec![0u16; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if ta[i] == tb[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops: Vec<DiffOp> = Vec::new();
    let mut push = |op: DiffOp| {
        let merged = match (ops.last_mut(), &op) {
            (Some(DiffOp::Same(s)), DiffOp::Same(t))
            | (Some(DiffOp::Removed(s)), DiffOp::Removed(t))
            | (Some(DiffOp::Added(s)), DiffOp::Added(t)) => {
                s.push(' ');
                s.push_str(t);
                true
            }
            _ => false,
        };
        if !merged {
            ops.push(op);
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && ta[i] == tb[j] {
            push(DiffOp::Same(ta[i].to_owned()));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            push(DiffOp::Added(tb[j].to_owned()));
            j += 1;
        } else {
            push(DiffOp::Removed(ta[i].to_owned()));
            i += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_is_one_for_equal_and_low_for_unrelated() {
        assert_eq!(similarity("The capital is Paris.", "the capital is paris"), 1.0);
        assert!(similarity("The capital is Paris.", "I cannot help with that request.") < 0.1);
        let softened = similarity(
            "The protests were violently suppressed by the army, killing hundreds.",
            "The protests ended after the government restored order.",
        );
        assert!(softened < 0.3, "{softened}");
    }

    #[test]
    fn cjk_characters_are_words() {
        assert_eq!(words("天安门 Square"), ["天", "安", "门", "square"]);
        assert!(similarity("我不能回答这个问题", "我不能回答这个问题。") > 0.99);
    }

    #[test]
    fn diff_marks_changed_words() {
        let d = word_diff("the army killed protesters", "the government restored order");
        assert_eq!(d[0], DiffOp::Same("the".into()));
        assert!(d.contains(&DiffOp::Removed("army killed protesters".into())));
        assert!(d.contains(&DiffOp::Added("government restored order".into())));
        assert_eq!(word_diff("a b c", "a b c"), vec![DiffOp::Same("a b c".into())]);
    }
}

/// Markers of chat templates that belong to the prompt, never to an answer.
const TEMPLATE_MARKERS: &[&str] = &[
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<start_of_turn>",
    "<end_of_turn>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
];

/// The first template leftover in an answer: a chat template's marker, a control token
/// written `<|name|>`, or an unfilled `{{ name }}` placeholder. What a server that rendered
/// or served the prompt wrong lets through.
pub fn template_leftover(answer: &str) -> Option<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    if let Some((at, m)) = TEMPLATE_MARKERS.iter().filter_map(|m| answer.find(m).map(|at| (at, *m))).min() {
        found.push((at, m.to_owned()));
    }
    if let Some(t) = delimited(answer, "<|", "|>", |c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        found.push(t);
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == ' ';
    if let Some(t) = delimited(answer, "{{", "}}", ident).filter(|(_, t)| !t[2..t.len() - 2].trim().is_empty()) {
        found.push(t);
    }
    found.into_iter().min().map(|(_, t)| t)
}

/// The first `open…close` in `s` whose inside is 1 to 40 characters, each `inside(c)`.
fn delimited(s: &str, open: &str, close: &str, inside: impl Fn(char) -> bool) -> Option<(usize, String)> {
    let mut from = 0;
    while let Some(i) = s[from..].find(open) {
        let start = from + i;
        let body = &s[start + open.len()..];
        if let Some(end) = body.find(close) {
            let name = &body[..end];
            if (1..=40).contains(&name.chars().count()) && name.chars().all(&inside) {
                return Some((start, format!("{open}{name}{close}")));
            }
        }
        from = start + open.len();
    }
    None
}

#[cfg(test)]
mod leftover_tests {
    use super::template_leftover;

    #[test]
    fn template_leftovers_are_found_and_ordinary_text_is_not() {
        for (answer, marker) in [
            ("Paris.<|im_end|>\n<|im_start|>user", Some("<|im_end|>")),
            ("Sure<|eot_id|>", Some("<|eot_id|>")),
            ("[INST] again [/INST]", Some("[INST]")),
            ("Dear {{ name }}, thanks", Some("{{ name }}")),
            ("Hello <end_of_turn>", Some("<end_of_turn>")),
            ("Use a | b > c and {{}} or { {x} }", None),
            ("if (a <| b) or x |> y", None),
            ("The capital of France is Paris.", None),
        ] {
            assert_eq!(template_leftover(answer).as_deref(), marker, "{answer}");
        }
    }
}
