//! Hostile input to the spec and catalog decoders: whatever the text, decoding returns
//! a value within every range or located diagnostics — never a panic, never an empty
//! error.
//!
//! `decoders_never_panic` runs `PARALLAX_PROPTEST_CASES` cases in all (default 10,000,
//! split over the generators below; about 10 s in a debug build). The full run is
//! `PARALLAX_PROPTEST_CASES=100000` (about 100 s in debug).

use std::path::Path;

use parallax_core::{Catalog, JobSpec, Plan, limits};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// A YAML value, rendered in flow style so that any tree is one line of valid syntax.
#[derive(Debug, Clone)]
enum Y {
    Scalar(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

impl Y {
    fn render(&self, out: &mut String) {
        match self {
            Y::Scalar(s) => out.push_str(s),
            Y::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Y::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(": ");
                    v.render(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        self.render(&mut s);
        s
    }

    /// Every node, depth first, as a path of child indexes.
    fn paths(&self, prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        out.push(prefix.clone());
        let children: Vec<&Y> = match self {
            Y::Scalar(_) => vec![],
            Y::Seq(items) => items.iter().collect(),
            Y::Map(entries) => entries.iter().map(|(_, v)| v).collect(),
        };
        for (i, c) in children.into_iter().enumerate() {
            prefix.push(i);
            c.paths(prefix, out);
            prefix.pop();
        }
    }
}

fn s(v: &str) -> Y {
    Y::Scalar(v.to_owned())
}

fn map(entries: &[(&str, Y)]) -> Y {
    Y::Map(entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
}

/// A valid spec: every field of the format is present, so mutations reach every decoder.
fn valid_spec() -> Y {
    map(&[
        ("name", s("hostile")),
        (
            "questions",
            Y::Seq(vec![
                map(&[("id", s("q1")), ("text", s("\"What is 2+2?\"")), ("expect", s("comply"))]),
                map(&[("file", s("qs.jsonl")), ("id_prefix", s("f-"))]),
            ]),
        ),
        ("models", Y::Seq(vec![s("m1"), s("m2")])),
        ("regions", Y::Seq(vec![s("r1"), s("r2")])),
        (
            "prompt",
            map(&[
                ("system", s("\"Be brief.\"")),
                ("system_by_region", map(&[("r2", s("\"Sois bref.\""))])),
                ("mode", s("chat")),
                ("date", s("\"2026-01-02\"")),
            ]),
        ),
        (
            "sampling",
            map(&[
                ("temperature", s("0.7")),
                ("top_p", s("0.9")),
                ("max_tokens", s("64")),
                ("seed", s("7")),
                ("stop", Y::Seq(vec![s("\"\\n\"")])),
            ]),
        ),
        ("samples", s("2")),
        (
            "run",
            map(&[
                ("concurrency", s("4")),
                ("delay_ms", s("0")),
                ("max_attempts", s("3")),
                ("timeout_s", s("30")),
                ("limit", s("10")),
                ("on_possibly_billed", s("park")),
                ("lease_s", s("60")),
            ]),
        ),
    ])
}

fn valid_catalog() -> Y {
    let endpoint = |name: &str| {
        map(&[
            ("name", s(name)),
            ("kind", s("openai-chat")),
            ("base_url", s("\"http://127.0.0.1:8001/v1\"")),
            ("api_key_env", s("MY_KEY")),
            ("concurrency", s("8")),
            ("rate_per_s", s("2.5")),
            ("max_retry_after_s", s("30")),
            ("max_response_bytes", s("1048576")),
            (
                "models",
                map(&[
                    ("m1", s("prov-m1")),
                    (
                        "m2",
                        map(&[
                            ("name", s("prov-m2")),
                            ("aliases", Y::Seq(vec![s("prov-m2-2025")])),
                            ("price_per_mtok", map(&[("input", s("2.5")), ("output", s("10"))])),
                        ]),
                    ),
                ]),
            ),
        ])
    };
    let local = map(&[
        ("name", s("local")),
        ("kind", s("local-gguf")),
        ("path", s("models/")),
        ("threads", s("4")),
        ("chat_template", s("t.jinja")),
        ("models", map(&[("m3", s("m3.gguf"))])),
    ]);
    map(&[("regions", map(&[("r1", Y::Seq(vec![endpoint("e1"), local])), ("r2", Y::Seq(vec![endpoint("e2")]))]))])
}

/// Scalars chosen to hurt: the edges of every integer and float type, non-numbers,
/// things YAML reads as other types, control characters and long strings.
fn nasty_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e300".to_owned()),
        Just("-1e300".to_owned()),
        Just("3e18".to_owned()),
        Just("4000000000".to_owned()),
        Just("2305843009213693952".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("99999999999999999999999999999".to_owned()),
        Just(".nan".to_owned()),
        Just(".inf".to_owned()),
        Just("-.inf".to_owned()),
        Just("0.0000001".to_owned()),
        Just("1.5".to_owned()),
        Just("0x7fffffffffffffff".to_owned()),
        Just("0o777".to_owned()),
        Just("~".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"   \"".to_owned()),
        Just("\"http://u:p@h/v1\"".to_owned()),
        Just("\"http://h/v1?api_key=x\"".to_owned()),
        Just("\"/dev/zero\"".to_owned()),
        Just("\"\\u001b]0;title\\u0007\\u001b[2J\"".to_owned()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        (0u64..20_000).prop_map(|i| i.to_string()),
        any::<String>().prop_map(|t| serde_json::to_string(&t).unwrap()),
        "[a-z_]{1,12}".prop_map(|t| t),
        (1usize..3000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
    ]
}

fn tree() -> impl Strategy<Value = Y> {
    let leaf = nasty_scalar().prop_map(Y::Scalar);
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(vec![
                "name",
                "questions",
                "models",
                "regions",
                "prompt",
                "sampling",
                "samples",
                "run",
                "id",
                "text",
                "file",
                "kind",
                "base_url",
                "concurrency",
                "timeout_s",
                "models",
                "regions",
                "threads",
                "max_tokens",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Y::Seq),
            prop::collection::vec((key, inner), 0..6).prop_map(Y::Map),
        ]
    })
}

/// A valid document with `n` of its nodes replaced by hostile subtrees.
fn mutated(base: Y) -> impl Strategy<Value = String> {
    let mut paths = Vec::new();
    base.paths(&mut Vec::new(), &mut paths);
    prop::collection::vec((prop::sample::select(paths), tree()), 1..4).prop_map(move |edits| {
        let mut doc = base.clone();
        for (path, value) in edits {
            // An earlier edit may have replaced an ancestor: a path that no longer exists is skipped.
            replace(&mut doc, &path, value);
        }
        doc.text()
    })
}

fn replace(node: &mut Y, path: &[usize], value: Y) {
    match path.split_first() {
        None => *node = value,
        Some((i, rest)) => match node {
            Y::Seq(items) if *i < items.len() => replace(&mut items[*i], rest, value),
            Y::Map(entries) if *i < entries.len() => replace(&mut entries[*i].1, rest, value),
            _ => {}
        },
    }
}

/// Text that is only roughly YAML: the syntax characters, indentation and words.
fn soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ": ",
            ", ",
            "- ",
            "\n",
            "\n  ",
            "\n    ",
            "#",
            "&a ",
            "*a",
            "!!str ",
            "!!int ",
            "|",
            ">",
            "'",
            "\"",
            "%YAML 1.2\n",
            "---\n",
            "...\n",
            "? ",
            "\t",
            "\u{0}",
            "\u{feff}",
            "\u{1b}[2J",
            "name",
            "questions",
            "models",
            "regions",
            "samples",
            "run",
            "concurrency",
            "timeout_s",
            "id",
            "text",
            "file",
            "base_url",
            "kind",
            "openai-chat",
            "1e300",
            "-1",
            ".nan",
            "4000000000",
            "x",
        ])
        .prop_map(str::to_owned),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|p| p.concat())
}

fn read_questions(path: &Path) -> std::io::Result<String> {
    if path.ends_with("qs.jsonl") {
        Ok("{\"id\": \"a\", \"text\": \"hi\"}\n{\"id\": 2, \"question\": \"there\", \"expect\": \"refuse\"}\n"
            .to_owned())
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"))
    }
}

fn plan_catalog() -> Catalog {
    Catalog::parse(&valid_catalog().text(), Path::new("catalog.yaml")).expect("the valid catalog decodes")
}

/// Decodes a spec: an error must say where and what; a spec must be within every range.
fn check_spec(text: &str, catalog: &Catalog) -> Result<(), TestCaseError> {
    let mut read = read_questions;
    match JobSpec::parse(text, Path::new("spec.yaml"), &mut read) {
        Err(d) => {
            prop_assert!(!d.0.is_empty(), "an error with no diagnostic for {text:?}");
            for x in &d.0 {
                prop_assert!(!x.message.is_empty());
                prop_assert!(x.file == Path::new("spec.yaml") || x.file.ends_with("qs.jsonl"), "{x}");
            }
        }
        Ok(spec) => {
            prop_assert!(limits::SAMPLES.contains(&u64::from(spec.samples)));
            prop_assert!(limits::CONCURRENCY.contains(&(spec.run.concurrency as u64)));
            prop_assert!(limits::TIMEOUT_S.contains(&spec.run.timeout_s));
            prop_assert!(spec.run.lease_s.is_none_or(|l| limits::LEASE_S.contains(&l)));
            prop_assert!(limits::MAX_ATTEMPTS.contains(&u64::from(spec.run.max_attempts)));
            prop_assert!(limits::DELAY_MS.contains(&spec.run.delay_ms));
            prop_assert!(spec.sampling.max_tokens.is_none_or(|m| limits::MAX_TOKENS.contains(&m)));
            prop_assert!(spec.sampling.temperature.is_none_or(|t| limits::TEMPERATURE.contains(&t)));
            let n = spec.questions.len() * spec.models.len() * spec.regions.len() * spec.samples as usize;
            prop_assert!(n as u64 <= limits::MAX_EXECUTIONS);
            // Small plans are built too: resolution and rendering must not panic either.
            if n <= 2_000
                && let Ok(plan) = Plan::build(&spec, catalog)
            {
                prop_assert_eq!(plan.len(), n);
            }
        }
    }
    Ok(())
}

fn check_catalog(text: &str) -> Result<(), TestCaseError> {
    match Catalog::parse(text, Path::new("catalog.yaml")) {
        Err(d) => {
            prop_assert!(!d.0.is_empty(), "an error with no diagnostic for {text:?}");
            for x in &d.0 {
                prop_assert!(!x.message.is_empty());
            }
        }
        Ok(c) => {
            for e in c.regions.values().flat_map(|r| &r.endpoints) {
                prop_assert!(e.concurrency.is_none_or(|n| limits::CONCURRENCY.contains(&(n as u64))));
                prop_assert!(e.rate_per_s.is_none_or(|r| limits::RATE_PER_S.contains(&r)));
                prop_assert!(e.max_retry_after_s.is_none_or(|r| limits::MAX_RETRY_AFTER_S.contains(&r)));
                prop_assert!(e.max_response_bytes.is_none_or(|r| limits::MAX_RESPONSE_BYTES.contains(&r)));
                prop_assert!(!e.base_url.contains('@') && !e.base_url.contains('?'), "{}", e.base_url);
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PARALLAX_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

#[test]
fn decoders_never_panic() {
    let total = cases();
    // Mutated documents reach the decoders' every branch; soup and trees reach the parser.
    let share = [(total * 4 / 10), (total * 4 / 10), (total / 10), total - total * 9 / 10];
    let catalog = plan_catalog();
    let started = std::time::Instant::now();
    runner(share[0]).run(&mutated(valid_spec()), |text| check_spec(&text, &catalog)).unwrap();
    runner(share[1]).run(&mutated(valid_catalog()), |text| check_catalog(&text)).unwrap();
    runner(share[2])
        .run(&soup(), |text| {
            check_spec(&text, &catalog)?;
            check_catalog(&text)
        })
        .unwrap();
    runner(share[3])
        .run(&tree(), |t| {
            let text = t.text();
            check_spec(&text, &catalog)?;
            check_catalog(&text)
        })
        .unwrap();
    eprintln!("decoders_never_panic: {total} cases in {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn the_valid_documents_decode() {
    let catalog = plan_catalog();
    let mut read = read_questions;
    let spec = JobSpec::parse(&valid_spec().text(), Path::new("spec.yaml"), &mut read).expect("valid spec");
    assert_eq!(spec.questions.len(), 3);
    assert_eq!(Plan::build(&spec, &catalog).expect("plans").len(), 3 * 2 * 2 * 2);
}

/// Every numeric field, each value outside its range: refused, at the field's line.
#[test]
fn every_number_out_of_range_is_refused_where_it_is() {
    let spec_fields = [
        ("samples: {}", "samples"),
        ("run: {{concurrency: {}}}", "run.concurrency"),
        ("run: {{delay_ms: {}}}", "run.delay_ms"),
        ("run: {{max_attempts: {}}}", "run.max_attempts"),
        ("run: {{timeout_s: {}}}", "run.timeout_s"),
        ("run: {{lease_s: {}}}", "run.lease_s"),
        ("run: {{limit: {}}}", "run.limit"),
        ("sampling: {{temperature: {}}}", "sampling.temperature"),
        ("sampling: {{top_p: {}}}", "sampling.top_p"),
        ("sampling: {{max_tokens: {}}}", "sampling.max_tokens"),
    ];
    let bad =
        ["-1", "1e300", "-1e300", ".nan", ".inf", "3e18", "4000000000", "18446744073709551616", "2305843009213693952"];
    let mut tried = 0;
    for (template, field) in spec_fields {
        for value in bad {
            let line = template.replace("{}", value).replace("{{", "{").replace("}}", "}");
            let text = format!("name: n\nquestions: [{{id: a, text: hi}}]\nmodels: [m1]\nregions: [r1]\n{line}\n");
            let mut read = read_questions;
            let d = JobSpec::parse(&text, Path::new("spec.yaml"), &mut read)
                .expect_err(&format!("{field}: {value} must be refused"));
            let x = d.0.iter().find(|x| x.field == field).unwrap_or_else(|| panic!("{field}: {value}: {d}"));
            assert_eq!(x.line, 5, "{x}");
            assert!(x.message.contains(" to "), "names the range: {x}");
            tried += 1;
        }
    }
    let endpoint_fields = ["concurrency", "rate_per_s", "max_retry_after_s", "max_response_bytes"];
    for field in endpoint_fields {
        for value in bad.iter().chain(&["0"]) {
            if *value == "0" && field == "max_retry_after_s" {
                continue;
            }
            let text = format!(
                "regions:\n  r1:\n    - name: e\n      kind: openai-chat\n      base_url: http://h/v1\n      {field}: {value}\n      models: {{m1: p}}\n"
            );
            let d = Catalog::parse(&text, Path::new("c.yaml")).expect_err(&format!("{field}: {value} must be refused"));
            let x = d.0.iter().find(|x| x.field.ends_with(field)).unwrap_or_else(|| panic!("{field}: {value}: {d}"));
            assert_eq!(x.line, 6, "{x}");
            tried += 1;
        }
    }
    eprintln!("every_number_out_of_range_is_refused_where_it_is: {tried} inputs");
}

/// The plan's size is checked before anything is allocated for it, and its parity check is
/// linear in the samples.
#[test]
fn a_plan_past_its_bound_is_refused_and_a_large_one_builds_in_linear_time() {
    let questions: String = (0..10_001).map(|i| format!("  - {{id: q{i}, text: hi}}\n")).collect();
    let text = format!("name: big\nquestions:\n{questions}models: [m1]\nregions: [r1]\nsamples: 10000\n");
    let mut read = read_questions;
    let d = JobSpec::parse(&text, Path::new("spec.yaml"), &mut read).expect_err("100,010,000 executions");
    assert_eq!(d.0.len(), 1, "{d}");
    assert!(d.0[0].to_string().contains("spec.yaml:10006:10: `samples`: 10,001 questions"), "{d}");

    let text = "name: wide\nquestions: [{id: q, text: hi}]\nmodels: [m1]\nregions: [r1, r2]\nsamples: 10000\n";
    let spec = JobSpec::parse(text, Path::new("spec.yaml"), &mut read).expect("valid");
    let started = std::time::Instant::now();
    let plan = Plan::build(&spec, &plan_catalog()).expect("plans");
    eprintln!("a plan of 10,000 samples × 2 regions: parity in {:.2}s", started.elapsed().as_secs_f64());
    assert_eq!(plan.parity.groups, 10_000);
    assert_eq!(plan.parity.identical, 10_000);
}
