//! A YAML (and JSON) document as a tree whose every node knows its line and column.
//!
//! serde stops at the first type error and loses positions for most of them, so specs
//! and catalogs are parsed into this tree first and decoded by hand (see [`crate::decode`]),
//! which lets us report every problem at once, each with its line, column and field.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

/// One node of a parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are scalars rendered as text.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The YAML type name, for error messages ("expected a string, found a mapping").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The key text of a mapping key (scalars only; anything else renders as its type).
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".to_owned(),
            other => format!("<{}>", other.type_name()),
        }
    }
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// How deep collections may nest, aliases expanded. Specs and catalogs need six levels;
/// a tree thousands deep would overflow the stack while it is built, read or dropped.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document (JSON is accepted: it is YAML's flow style).
/// An empty document is `Null` at line 1.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    check_depth(text)?;
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| SyntaxError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    match docs.len() {
        0 => Ok(Node { value: Value::Null, line: 1, column: 1 }),
        1 => Ok(convert(docs.into_iter().next().expect("one document"))),
        n => {
            let second = &docs[1];
            Err(SyntaxError {
                line: second.span.start.line(),
                column: second.span.start.col() + 1,
                message: format!("expected one YAML document, found {n}"),
            })
        }
    }
}

/// Refuses a document nested deeper than [`MAX_DEPTH`], counting what an alias expands to,
/// from the parser's events alone (no tree is built, nothing recurses). Syntax errors are
/// left for the loader to report.
fn check_depth(text: &str) -> Result<(), SyntaxError> {
    use saphyr_parser::{Event, Parser};
    // Per open collection: its anchor, the depth it opened at, the deepest depth inside it.
    let mut open: Vec<(usize, usize, usize)> = Vec::new();
    let mut heights: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { return Ok(()) };
        let reached = match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let depth = open.len() + 1;
                open.push((anchor, depth, depth));
                depth
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((anchor, depth, deepest)) = open.pop() else { continue };
                if anchor > 0 {
                    heights.insert(anchor, deepest - depth + 1);
                }
                deepest
            }
            Event::Alias(anchor) => open.len() + heights.get(&anchor).copied().unwrap_or(0),
            _ => continue,
        };
        if reached > MAX_DEPTH {
            return Err(SyntaxError {
                line: span.start.line().max(1),
                column: span.start.col() + 1,
                message: format!("collections nest deeper than {MAX_DEPTH} levels"),
            });
        }
        if let Some(top) = open.last_mut() {
            top.2 = top.2.max(reached);
        }
    }
    Ok(())
}

fn convert(node: MarkedYamlOwned) -> Node {
    let line = node.span.start.line().max(1);
    let column = node.span.start.col() + 1;
    let value = match node.data {
        YamlDataOwned::Value(scalar) => match scalar {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(b),
            ScalarOwned::Integer(i) => Value::Int(i),
            ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
            ScalarOwned::String(s) => Value::Str(s),
        },
        YamlDataOwned::Representation(text, _, _) => Value::Str(text),
        YamlDataOwned::Sequence(items) => Value::Seq(items.into_iter().map(convert).collect()),
        YamlDataOwned::Mapping(map) => Value::Map(map.into_iter().map(|(k, v)| (convert(k), convert(v))).collect()),
        YamlDataOwned::Tagged(_, inner) => return convert(*inner),
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => Value::Null,
    };
    Node { value, line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let Value::Map(entries) = doc.value else { panic!("not a map") };
        assert_eq!(entries[0].0.key_text(), "a");
        assert_eq!((entries[0].1.line, entries[0].1.column), (1, 4));
        let Value::Seq(items) = &entries[1].1.value else { panic!("not a seq") };
        assert_eq!((items[1].line, items[1].column), (4, 5));
        assert_eq!(items[1].value, Value::Str("y".into()));
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let doc = parse("a: '7'\nb: 7\nc: 0.5\nd: true\ne: ~").unwrap();
        let Value::Map(e) = doc.value else { panic!() };
        let values: Vec<_> = e.into_iter().map(|(_, v)| v.value).collect();
        assert_eq!(
            values,
            vec![Value::Str("7".into()), Value::Int(7), Value::Float(0.5), Value::Bool(true), Value::Null]
        );
    }

    #[test]
    fn json_is_accepted() {
        let doc = parse(r#"{"name": "x", "models": ["a", "b"]}"#).unwrap();
        assert!(matches!(doc.value, Value::Map(ref e) if e.len() == 2));
    }

    #[test]
    fn deep_nesting_is_refused_before_a_tree_is_built() {
        let ok = format!("{}x{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}x{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).unwrap_err().message.contains("nest deeper"));
        let block: String = (0..5000).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        let err = parse(&block).unwrap_err();
        assert_eq!(err.line, MAX_DEPTH + 1, "{err:?}");
        let dashes = format!("{}x\n", "- ".repeat(100_000));
        assert!(parse(&dashes).unwrap_err().message.contains("nest deeper"));
        // Each alias nests the previous anchor 40 levels deeper: the expanded depth counts.
        let mut chained = String::from("a0: &a0 x\n");
        for i in 1..4 {
            chained.push_str(&format!("a{i}: &a{i} {}*a{}{}\n", "[".repeat(40), i - 1, "]".repeat(40)));
        }
        assert!(parse(&chained).unwrap_err().message.contains("nest deeper"), "{chained}");
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_have_positions() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse("a: [1, 2\nb: 3").unwrap_err();
        assert!(err.line >= 1, "{err:?}");
    }
}
