//! Problems found in a user's file, each with its place, its field and a fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single place (a missing file).
    pub line: usize,
    pub column: usize,
    /// The field's path, e.g. `questions[2].text` or `run.concurrency`.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// One line and its hint. Every part may carry the user's text (a field named in the
    /// file, a value echoed): control characters are escaped, so none reaches a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", escape_controls(&self.file.display().to_string()))?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": `{}`", escape_controls(&self.field))?;
        }
        write!(f, ": {}", escape_controls(&self.message))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {}", escape_controls(hint))?;
        }
        Ok(())
    }
}

/// `text` with every control character (C0, DEL, C1: ESC, CSI, OSC, BEL, CR, newline…)
/// written as a Rust-style escape (`\u{1b}`, `\n`), so that text from a file or a server
/// can be shown on a terminal without moving the cursor, retitling the window, clearing
/// the screen or planting a link. Other characters are kept as they are.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The most problems one file reports.
const MAX_DIAGNOSTICS: usize = 10_000;

/// Every problem found in a spec or catalog, reported together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Past a screenful, more lines of the same mistake help nobody.
        const SHOWN: usize = 25;
        let n = self.0.len();
        writeln!(f, "{n} problem{} found:", if n == 1 { "" } else { "s" })?;
        for d in self.0.iter().take(SHOWN) {
            writeln!(f, "{d}")?;
        }
        if n > SHOWN {
            writeln!(f, "… and {} more", n - SHOWN)?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// In reading order: by file, then line, then column.
    pub(crate) fn sorted(mut self) -> Diagnostics {
        self.0.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(
        &mut self,
        file: &Path,
        (line, column): (usize, usize),
        field: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        // A hostile file can have a million mistakes; the first ten thousand say enough.
        if self.0.len() >= MAX_DIAGNOSTICS {
            return;
        }
        self.0.push(Diagnostic {
            file: file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
            hint,
        });
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(row[j]).min(cur) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain ☃ text"), "plain ☃ text");
        assert_eq!(
            escape_controls("\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}x\r\n"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}x\\r\\n"
        );
        let d = Diagnostic {
            file: "s.yaml".into(),
            line: 1,
            column: 7,
            field: "name".into(),
            message: "`\u{1b}[2J` has characters".into(),
            hint: Some("\u{7}".into()),
        };
        assert!(!d.to_string().chars().any(|c| c.is_control() && c != '\n'), "{d}");
    }

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(did_you_mean("regoins", &["regions", "models"]), Some("regions"));
        assert_eq!(did_you_mean("sampels", &["samples", "sampling"]), Some("samples"));
        assert_eq!(did_you_mean("banana", &["regions", "models"]), None);
    }
}
