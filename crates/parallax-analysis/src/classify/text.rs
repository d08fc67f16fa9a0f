//! Normalised text: words in lower case, sentences that remember where they came from.
//!
//! Everything the rules look at goes through [`Text::new`] (responses) or [`words`] (prompts and
//! the lexicon's own phrases), so that a phrase written once in the lexicon matches however a
//! model typesets it:
//!
//! - typographic apostrophes and quotes become ASCII (`’` → `'`);
//! - markdown is dropped: emphasis (`**`, `__`, `*`, `_`), code ticks, headings (`#`), block
//!   quotes (`>`) and list markers (`-`, `*`, `+`, `1.`, `1)`) at the start of a line;
//! - leading whitespace is ignored and runs of whitespace are one separator;
//! - words are lower-cased; punctuation inside a sentence separates words and is otherwise
//!   dropped, so `Sorry, but I can't` and `sorry but i can't` are the same words;
//! - English contractions are expanded (`can't` → `cannot`, `won't` → `will not`,
//!   `isn't` → `is not`, `I'm` → `i am`, `it's` → `it is`, …), so `can not`, `cannot` and
//!   `can't` are one word;
//! - each CJK character, kana or hangul syllable is a word of its own, so `我不能` matches
//!   inside `抱歉，我不能帮助你`.
//!
//! Sentences end at `.`, `!`, `?` (followed by a space or the end), their full-width forms
//! `。！？`, and at every line end. Each keeps the byte range of its original text, which is
//! what a verdict quotes as evidence.

/// One sentence: its words and where it is in the original text.
#[derive(Debug, Clone)]
pub(crate) struct Sentence {
    pub words: Vec<String>,
    /// Byte range of the sentence in the original text, punctuation included.
    pub start: usize,
    pub end: usize,
    /// The sentence opens a line that starts with a list marker (`1.`, `-`): a list item's head.
    pub list_item: bool,
}

/// A response, normalised.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    pub sentences: Vec<Sentence>,
    /// Some line starts with a list marker (`-`, `*`, `+`, `1.`, `1)`).
    pub has_list: bool,
}

impl Text {
    pub fn new(s: &str) -> Text {
        let mut b = Builder::default();
        let mut offset = 0;
        for line in s.split_inclusive('\n') {
            let (content, list) = strip_line_markup(line);
            b.has_list |= list;
            let base = offset + (line.len() - content.len());
            let first = b.sentences.len();
            b.scan(content, base);
            b.end_sentence();
            if let Some(head) = b.sentences.get_mut(first).filter(|_| list) {
                head.list_item = true;
            }
            offset += line.len();
        }
        Text { sentences: b.sentences, has_list: b.has_list }
    }
}

/// The normalised words of `s` (sentence boundaries ignored).
pub(crate) fn words(s: &str) -> Vec<String> {
    Text::new(s).sentences.into_iter().flat_map(|s| s.words).collect()
}

/// Strips a line's leading whitespace, block-quote markers, heading marks and list marker.
/// Returns the rest and whether a list marker was found.
fn strip_line_markup(line: &str) -> (&str, bool) {
    let mut rest = line.trim_start();
    loop {
        let before = rest.len();
        rest = rest.trim_start_matches('>').trim_start();
        rest = rest.trim_start_matches('#').trim_start();
        if rest.len() == before {
            break;
        }
    }
    for marker in ["- ", "* ", "+ ", "• "] {
        if let Some(r) = rest.strip_prefix(marker) {
            return (r.trim_start(), true);
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=3).contains(&digits) {
        let after = &rest[digits..];
        for marker in [". ", ") "] {
            if let Some(r) = after.strip_prefix(marker) {
                return (r.trim_start(), true);
            }
        }
    }
    (rest, false)
}

#[derive(Default)]
struct Builder {
    sentences: Vec<Sentence>,
    has_list: bool,
    words: Vec<String>,
    word: String,
    start: Option<usize>,
    end: usize,
}

impl Builder {
    fn scan(&mut self, s: &str, base: usize) {
        let mut chars = s.char_indices().peekable();
        let mut prev: Option<char> = None;
        while let Some((i, original)) = chars.next() {
            // Spans are measured in the original text: a folded character may be shorter.
            let at = base + i;
            let width = original.len_utf8();
            let next = chars.peek().map(|&(_, n)| n);
            let c = fold(original);
            if is_cjk(c) {
                self.flush_word();
                self.mark(at, width);
                self.words.push(c.to_string());
            } else if c.is_alphanumeric() {
                self.mark(at, width);
                self.word.extend(c.to_lowercase());
            } else if (c == '\'' || c == '.')
                && prev.is_some_and(char::is_alphanumeric)
                && next.is_some_and(|n| fold(n).is_alphanumeric() && !is_cjk(fold(n)))
            {
                // Inside a word: `can't`, `u.s.`, `1.5`.
                self.mark(at, width);
                self.word.push(c);
            } else if matches!(c, '.' | '!' | '?') && next.is_none_or(char::is_whitespace)
                || matches!(c, '。' | '！' | '？')
            {
                if c == '.' && is_abbreviation(&self.word) {
                    self.mark(at, width);
                    self.word.push('.');
                    self.flush_word();
                } else {
                    self.mark(at, width);
                    self.end_sentence();
                }
            } else {
                self.flush_word();
                if !c.is_whitespace() && !matches!(c, '*' | '_' | '`' | '#' | '~') {
                    // Quotes and brackets belong to the sentence's span but are not words.
                    self.mark(at, width);
                }
            }
            prev = Some(c);
        }
    }

    fn mark(&mut self, at: usize, width: usize) {
        self.start.get_or_insert(at);
        self.end = at + width;
    }

    fn flush_word(&mut self) {
        if self.word.is_empty() {
            return;
        }
        let w = std::mem::take(&mut self.word);
        let w = w.trim_end_matches('.');
        expand(w, &mut self.words);
    }

    fn end_sentence(&mut self) {
        self.flush_word();
        if let Some(start) = self.start.take() {
            if !self.words.is_empty() {
                self.sentences.push(Sentence {
                    words: std::mem::take(&mut self.words),
                    start,
                    end: self.end,
                    list_item: false,
                });
            }
            self.words.clear();
        }
    }
}

/// Typographic apostrophes and quotes to ASCII; full-width comma and colon to ASCII.
fn fold(c: char) -> char {
    match c {
        '\u{2019}' | '\u{2018}' | '\u{02BC}' | '\u{2032}' | '\u{FF07}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{00AB}' | '\u{00BB}' => '"',
        '\u{FF0C}' | '\u{3001}' => ',',
        '\u{FF1A}' => ':',
        _ => c,
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF) // CJK compatibility ideographs
}

fn is_abbreviation(w: &str) -> bool {
    matches!(w, "mr" | "mrs" | "ms" | "dr" | "st" | "vs" | "e.g" | "i.e" | "u.s" | "u.k" | "jr" | "sr")
}

/// Pushes `w` with English contractions expanded.
fn expand(w: &str, out: &mut Vec<String>) {
    let whole: Option<&[&str]> = match w {
        "can't" | "cant" => Some(&["cannot"]),
        "won't" => Some(&["will", "not"]),
        "shan't" => Some(&["shall", "not"]),
        "ain't" => Some(&["is", "not"]),
        "i'm" => Some(&["i", "am"]),
        "let's" => Some(&["let", "us"]),
        "it's" => Some(&["it", "is"]),
        "that's" => Some(&["that", "is"]),
        "there's" => Some(&["there", "is"]),
        "here's" => Some(&["here", "is"]),
        "what's" => Some(&["what", "is"]),
        "he's" => Some(&["he", "is"]),
        "she's" => Some(&["she", "is"]),
        "who's" => Some(&["who", "is"]),
        _ => None,
    };
    if let Some(ws) = whole {
        out.extend(ws.iter().map(|s| s.to_string()));
        return;
    }
    if let Some(stem) = w.strip_suffix("n't") {
        out.push(stem.to_string());
        out.push("not".to_string());
        return;
    }
    for (suffix, full) in [("'re", "are"), ("'ve", "have"), ("'ll", "will"), ("'d", "would")] {
        if let Some(stem) = w.strip_suffix(suffix) {
            out.push(stem.to_string());
            out.push(full.to_string());
            return;
        }
    }
    // `can not` is `cannot`.
    if w == "not" && out.last().is_some_and(|p| p == "can") {
        out.pop();
        out.push("cannot".to_string());
        return;
    }
    out.push(w.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(s: &str) -> Vec<String> {
        Text::new(s).sentences.iter().map(|x| x.words.join(" ")).collect()
    }

    #[test]
    fn apostrophes_contractions_and_markdown() {
        assert_eq!(sentences("**I can’t** help with _that_."), ["i cannot help with that"]);
        assert_eq!(sentences("  > ## I can not do it"), ["i cannot do it"]);
        assert_eq!(sentences("- I won't.\n2. It's fine!"), ["i will not", "it is fine"]);
        assert!(Text::new("Steps:\n1. First\n2) Second").has_list);
        assert!(!Text::new("In 1990. Then").has_list);
        // Only the first sentence of a list line is an item's head.
        let items: Vec<bool> =
            Text::new("Tips:\n1. Practice. Often.\n- Rest").sentences.iter().map(|x| x.list_item).collect();
        assert_eq!(items, [false, true, false, true]);
    }

    #[test]
    fn sentences_keep_their_original_span() {
        let s = "Sorry, but I can't. In the U.S. it is 1.5 times, e.g. here! Done";
        let t = Text::new(s);
        let spans: Vec<&str> = t.sentences.iter().map(|x| &s[x.start..x.end]).collect();
        assert_eq!(spans, ["Sorry, but I can't.", "In the U.S. it is 1.5 times, e.g. here!", "Done"]);
        assert_eq!(t.sentences[1].words, ["in", "the", "u.s", "it", "is", "1.5", "times", "e.g", "here"]);
    }

    #[test]
    fn cjk_characters_are_words() {
        assert_eq!(sentences("抱歉，我不能帮助你。好的"), ["抱 歉 我 不 能 帮 助 你", "好 的"]);
        assert_eq!(words("Извините, но я НЕ могу"), ["извините", "но", "я", "не", "могу"]);
        // Spans are in the original text, whose full-width comma is three bytes.
        let s = "抱歉，我不能。好";
        let t = Text::new(s);
        assert_eq!(&s[t.sentences[0].start..t.sentences[0].end], "抱歉，我不能。");
    }
}
