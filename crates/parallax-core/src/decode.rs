//! Hand decoding of a [`Node`] tree into typed values, collecting every problem.

use std::ops::RangeInclusive;
use std::path::Path;

use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::limits::{describe, describe_f64};
use crate::yaml::{Node, Value};

pub(crate) struct Decoder<'a> {
    pub file: &'a Path,
    pub diags: Diagnostics,
}

/// The entries of a mapping whose keys were all checked against a known list.
pub(crate) struct Fields<'n> {
    entries: Vec<(String, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// The entries whose keys are not in `known` (only for open mappings).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'n Node)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() { child.to_owned() } else { format!("{parent}.{child}") }
}

impl<'a> Decoder<'a> {
    pub fn new(file: &'a Path) -> Self {
        Decoder { file, diags: Diagnostics(Vec::new()) }
    }

    pub fn error(&mut self, node: &Node, field: &str, message: impl Into<String>, hint: Option<String>) {
        self.diags.push(self.file, (node.line, node.column), field, message, hint);
    }

    fn type_error(&mut self, node: &Node, field: &str, expected: &str, hint: Option<String>) {
        let message = format!("expected {expected}, found {}", node.value.type_name());
        self.error(node, field, message, hint);
    }

    /// A mapping whose keys must all be in `known`; unknown keys are reported with a suggestion.
    pub fn fields<'n>(&mut self, node: &'n Node, field: &str, known: &[&str]) -> Option<Fields<'n>> {
        let fields = self.open_fields(node, field)?;
        let Value::Map(entries) = &node.value else { return None };
        // Keys and entries are in the same order: each unknown key is reported at its own node.
        for ((key, _), (key_node, _)) in fields.entries.iter().zip(entries) {
            if !known.contains(&key.as_str()) {
                let hint = match did_you_mean(key, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known fields here: {}", known.join(", ")),
                };
                self.error(key_node, &join(field, key), format!("unknown field `{key}`"), Some(hint));
            }
        }
        Some(fields)
    }

    /// A mapping with arbitrary keys (e.g. model id → provider name).
    pub fn open_fields<'n>(&mut self, node: &'n Node, field: &str) -> Option<Fields<'n>> {
        match &node.value {
            Value::Map(entries) => Some(Fields { entries: entries.iter().map(|(k, v)| (k.key_text(), v)).collect() }),
            _ => {
                self.type_error(node, field, "a mapping", None);
                None
            }
        }
    }

    pub fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                let hint = match &node.value {
                    Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                        Some("quote the value to make it a string".to_owned())
                    }
                    _ => None,
                };
                self.type_error(node, field, "a string", hint);
                None
            }
        }
    }

    /// An identifier-like string: a string, or a bare number/boolean taken as its text.
    pub fn name(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) if s.trim().is_empty() => {
                self.error(node, field, "must not be empty", None);
                None
            }
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => {
                self.type_error(node, field, "a string", None);
                None
            }
        }
    }

    /// A whole number in `range`.
    pub fn uint(&mut self, node: &Node, field: &str, range: RangeInclusive<u64>) -> Option<u64> {
        match node.value {
            Value::Int(i) if u64::try_from(i).is_ok_and(|u| range.contains(&u)) => Some(i as u64),
            Value::Int(i) => {
                self.error(node, field, format!("must be from {}, found {i}", describe(&range)), None);
                None
            }
            Value::Float(x) => {
                self.error(node, field, format!("must be a whole number from {}, found {x:?}", describe(&range)), None);
                None
            }
            _ => {
                self.type_error(node, field, &format!("a whole number from {}", describe(&range)), None);
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.type_error(node, field, "`true` or `false`", None);
                None
            }
        }
    }

    pub fn int(&mut self, node: &Node, field: &str) -> Option<i64> {
        match node.value {
            Value::Int(i) => Some(i),
            _ => {
                self.type_error(node, field, "a whole number", None);
                None
            }
        }
    }

    /// A number in `range` (never NaN or infinite).
    pub fn number(&mut self, node: &Node, field: &str, range: RangeInclusive<f64>) -> Option<f64> {
        let x = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            _ => {
                self.type_error(node, field, &format!("a number from {}", describe_f64(&range)), None);
                return None;
            }
        };
        if !range.contains(&x) {
            let found = match node.value {
                Value::Int(i) => i.to_string(),
                // `{:?}` writes 1e300 as `1e300`, not three hundred digits.
                _ => format!("{x:?}"),
            };
            self.error(node, field, format!("must be a number from {}, found {found}", describe_f64(&range)), None);
            return None;
        }
        Some(x)
    }

    /// A list of names; a single name is accepted as a list of one.
    pub fn names<'n>(&mut self, node: &'n Node, field: &str) -> Option<Vec<(String, &'n Node)>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.name(item, &format!("{field}[{i}]")) {
                        Some(s) => out.push((s, item)),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            Value::Str(_) => self.name(node, field).map(|s| vec![(s, node)]),
            _ => {
                self.type_error(node, field, "a list of names", None);
                None
            }
        }
    }

    pub fn strings(&mut self, node: &Node, field: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &format!("{field}[{i}]"))?);
                }
                Some(out)
            }
            Value::Str(s) => Some(vec![s.clone()]),
            _ => {
                self.type_error(node, field, "a list of strings", None);
                None
            }
        }
    }
}
