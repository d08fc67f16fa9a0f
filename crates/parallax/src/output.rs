//! Writing data to stdout: aligned tables for people, JSON, JSON Lines and CSV for programs.
//! Only data goes to stdout; messages and progress go to stderr. A closed pipe
//! (`parallax results … | head`) ends output quietly.

use std::io::{self, Write};

pub use parallax_core::diagnostic::escape_controls;
use unicode_width_lite::width;

/// Writes `text` to stdout; a broken pipe is not an error.
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Text for a terminal: control characters (ESC, CSI, OSC, BEL, CR…) other than newlines
/// are escaped (`\u{1b}`), so an answer, a question id or a server's error can neither
/// move the cursor, retitle the window, clear the screen nor plant a link. JSON, JSON
/// Lines and CSV stay exact; this is for what people read.
pub fn terminal_safe(text: &str) -> String {
    text.split('\n').map(|line| escape_controls(line).into_owned()).collect::<Vec<_>>().join("\n")
}

/// An aligned text table. Cells are single-line: newlines and tabs become spaces, other
/// control characters are escaped.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| escape_controls(&s.replace(['\n', '\r', '\t'], " ")).into_owned();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            if i + 1 < widths.len() {
                l.extend(std::iter::repeat_n(' ', widths[i].saturating_sub(width(cell))));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub use parallax_app::html::pct;

/// The first `n` characters of `s`, with an ellipsis if cut. Control characters are
/// escaped first, so a cut never falls inside an escape sequence that could still act.
pub fn truncate(s: &str, n: usize) -> String {
    let s = escape_controls(&s.trim().replace(['\n', '\r', '\t'], " ")).into_owned();
    let s = s.as_str();
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

mod unicode_width_lite {
    /// Display width, counting East Asian wide characters as two columns. Good enough
    /// to keep tables of CJK questions aligned without another dependency.
    pub fn width(s: &str) -> usize {
        s.chars()
            .map(|c| match c as u32 {
                0x1100..=0x115F
                | 0x2E80..=0xA4CF
                | 0xAC00..=0xD7A3
                | 0xF900..=0xFAFF
                | 0xFE30..=0xFE4F
                | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6
                | 0x1F300..=0x1FAFF
                | 0x20000..=0x3FFFD => 2,
                _ => 1,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_flatten_newlines() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1\n2".into()]]);
        assert_eq!(t, "a    bb\nxyz  1 2\n");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let osc = "\u{1b}]8;;http://evil\u{7}click\u{1b}]8;;\u{7} \u{1b}[2J\u{9b}31m";
        let t = table(&["a"], &[vec![osc.into()]]);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(t.contains("\\u{1b}]8;;http://evil"), "{t:?}");
        let cut = truncate(osc, 5);
        assert!(!cut.chars().any(char::is_control), "{cut:?}");
        assert_eq!(terminal_safe("a\u{1b}[2J\nb\r"), "a\\u{1b}[2J\nb\\r");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("hello world", 6), "hello…");
        assert_eq!(truncate("hi", 6), "hi");
    }
}
