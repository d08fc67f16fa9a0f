//! Chat templates: real templates rendered byte for byte as Hugging Face transformers
//! renders them (references made with Jinja2), and the pieces that make that so.

use std::path::PathBuf;

use parallax_core::template::{
    ChatTemplate, Date, Message, RenderOptions, TEMPLATE_MARKERS, TemplateError, find_template_markers, starts_with_bos,
};
use serde_json::{Value as Json, json};

const TEMPLATES: [&str; 5] = ["smollm2", "tinyllama", "gemma2", "qwen25", "llama32"];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat-templates")
}

fn read(name: &str) -> String {
    let path = data_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn read_json(name: &str) -> Json {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("parsing {name}: {e}"))
}

fn compile(name: &str) -> ChatTemplate {
    ChatTemplate::new(&read(&format!("{name}.jinja"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The date the references were rendered with ("Today Date: 26 Jul 2024").
fn reference_date() -> Date {
    Date::new(2024, 7, 26).unwrap()
}

fn opts() -> RenderOptions {
    RenderOptions::new("<BOS>", "<EOS>", reference_date())
}

fn user(content: &str) -> Vec<Message> {
    vec![Message::new("user", content)]
}

/// Renders an ad-hoc template with one user message "Hi".
fn render_str(source: &str) -> Result<String, TemplateError> {
    ChatTemplate::new(source).unwrap().render(&user("Hi"), &opts())
}

/// Where two texts first differ, with some context on both sides, escaped.
fn first_difference(want: &str, got: &str) -> String {
    let pos = want.bytes().zip(got.bytes()).take_while(|(a, b)| a == b).count();
    let mut start = pos.saturating_sub(60);
    while !want.is_char_boundary(start) {
        start -= 1;
    }
    let snippet = |s: &str| {
        let mut end = (pos + 60).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        let mut from = start.min(s.len());
        while !s.is_char_boundary(from) {
            from -= 1;
        }
        format!("…{}⟦{}⟧…", s[from..pos.min(s.len())].escape_debug(), s[pos.min(s.len())..end].escape_debug())
    };
    let line = want[..pos].matches('\n').count() + 1;
    let column = pos - want[..pos].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(
        "first difference at byte {pos} (line {line}, column {column}); lengths: want {}, got {}\n  want: {}\n  got:  {}",
        want.len(),
        got.len(),
        snippet(want),
        snippet(got),
    )
}

#[test]
fn reference_renderings_match_byte_for_byte() {
    let scenarios = read_json("scenarios.json");
    let references = read_json("reference_renderings.json");
    let with = &scenarios["render_with"];
    assert_eq!(with["bos_token"], "<BOS>");
    assert_eq!(with["eos_token"], "<EOS>");
    assert_eq!(with["strftime_now"], "26 Jul 2024");

    let mut checked = 0;
    let mut failures = Vec::new();
    for name in TEMPLATES {
        let template = compile(name);
        for scenario in scenarios["scenarios"].as_array().unwrap() {
            let scenario_name = scenario["name"].as_str().unwrap();
            let messages: Vec<Message> = serde_json::from_value(scenario["messages"].clone()).unwrap();
            let mut options = opts();
            options.add_generation_prompt = scenario["add_generation_prompt"].as_bool().unwrap();
            options.tools = scenario.get("tools").map(|t| t.as_array().unwrap().clone());

            let want = references[name][scenario_name]
                .as_str()
                .unwrap_or_else(|| panic!("no reference for {name}/{scenario_name}"));
            let got = match template.render(&messages, &options) {
                Ok(text) => text,
                Err(TemplateError::Raised(message)) => format!("ERROR: {message}"),
                Err(other) => format!("unexpected error: {other}"),
            };
            checked += 1;
            if got != want {
                failures.push(format!("{name}/{scenario_name}: {}", first_difference(want, &got)));
            }
        }
    }
    assert_eq!(checked, 25);
    assert!(failures.is_empty(), "{} of 25 renderings differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_template_that_rejects_a_conversation_raises_with_its_message() {
    let messages = vec![Message::new("system", "Be brief."), Message::new("user", "Hi")];
    let err = compile("gemma2").render(&messages, &opts()).unwrap_err();
    assert_eq!(err, TemplateError::Raised("System role not supported".into()));

    let messages = vec![Message::new("user", "A"), Message::new("user", "B")];
    let err = compile("gemma2").render(&messages, &opts()).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Raised("Conversation roles must alternate user/assistant/user/assistant/...".into())
    );
}

#[test]
fn bos_is_added_exactly_once() {
    let mut options = opts();
    options.add_generation_prompt = true;

    // Gemma-2 emits {{ bos_token }} itself: the caller must not add another.
    let gemma = compile("gemma2").render(&user("Hi"), &options).unwrap();
    assert!(starts_with_bos(&gemma, "<BOS>"));

    // SmolLM2's template does not: the caller adds it.
    let smollm = compile("smollm2").render(&user("Hi"), &options).unwrap();
    assert!(!starts_with_bos(&smollm, "<BOS>"));

    // BOS text in the middle does not count; an empty BOS is never to be added.
    assert!(!starts_with_bos("x<BOS>", "<BOS>"));
    assert!(starts_with_bos(&smollm, ""));
}

#[test]
fn template_markers_are_found_in_raw_text() {
    assert_eq!(find_template_markers("What is the capital of France?", &[]), None);
    assert_eq!(find_template_markers("<|im_start|>user\nHi", &[]), Some("<|im_start|>"));
    assert_eq!(find_template_markers("[INST] Hi [/INST]", &[]), Some("[INST]"));
    assert_eq!(find_template_markers("<start_of_turn>user", &[]), Some("<start_of_turn>"));
    assert_eq!(find_template_markers("x <|begin_of_text|>", &[]), Some("<|begin_of_text|>"));
    // The caller's control tokens count too.
    assert_eq!(find_template_markers("Hi</s>", &["</s>", "<s>"]), Some("</s>"));
    assert_eq!(find_template_markers("Hi</s>", &["<|endoftext|>"]), None);
    // The earliest occurrence wins, whichever list it comes from.
    assert_eq!(find_template_markers("<s>[INST] Hi", &["<s>"]), Some("<s>"));
    assert_eq!(find_template_markers("[INST] <|im_start|>", &[]), Some("[INST]"));
    // Empty tokens are ignored rather than found everywhere.
    assert_eq!(find_template_markers("plain", &[""]), None);
    // Every rendered template that uses one of the built-in markers is caught.
    let mut options = opts();
    options.add_generation_prompt = true;
    for (name, marker) in [("smollm2", "<|im_start|>"), ("gemma2", "<start_of_turn>"), ("qwen25", "<|im_start|>")] {
        let text = compile(name).render(&user("Hi"), &options).unwrap();
        assert!(TEMPLATE_MARKERS.contains(&marker));
        assert_eq!(
            find_template_markers(&text, &["<BOS>"]),
            if name == "gemma2" { Some("<BOS>") } else { Some(marker) }
        );
    }
}

#[test]
fn strftime_now_reports_the_pinned_date() {
    let source = r#"{{ strftime_now("%d %b %Y") }}|{{ strftime_now("%Y-%m-%d") }}|{{ strftime_now("%A %B %-d, %y") }}|{{ strftime_now("%j %a %H:%M:%S %p %%") }}"#;
    assert_eq!(render_str(source).unwrap(), "26 Jul 2024|2024-07-26|Friday July 26, 24|208 Fri 00:00:00 AM %");
    let mut options = opts();
    options.date = Date::new(2025, 1, 5).unwrap();
    let text = ChatTemplate::new(source).unwrap().render(&user("Hi"), &options).unwrap();
    assert_eq!(text, "05 Jan 2025|2025-01-05|Sunday January 5, 25|005 Sun 00:00:00 AM %");

    // Llama 3.2 prints it in its system header.
    let text = compile("llama32").render(&user("Hi"), &options).unwrap();
    assert!(text.contains("Today Date: 05 Jan 2025\n"), "{text}");
}

#[test]
fn dates_are_validated_and_parsed() {
    assert_eq!(Date::new(2024, 2, 29).map(|d| d.to_string()), Some("2024-02-29".into()));
    assert_eq!(Date::new(2023, 2, 29), None);
    assert_eq!(Date::new(2024, 13, 1), None);
    assert_eq!(Date::new(2024, 4, 31), None);
    assert_eq!(Date::new(0, 1, 1), None);
    assert_eq!("2024-07-26".parse::<Date>(), Ok(reference_date()));
    assert!("2024-7-26".parse::<Date>().is_err());
    assert!("2024-02-30".parse::<Date>().is_err());
    assert!("yesterday".parse::<Date>().is_err());
}

#[test]
fn tojson_is_pythons_json_dumps() {
    let mut options = opts();
    options.extra.insert(
        "x".into(),
        json!({"z": "<a> & 'b' \"c\"", "a": [1, 2.5, 1e20, true, null], "é": "naïve ✓ 😀", "e": {}, "l": []}),
    );
    let render = |source: &str| ChatTemplate::new(source).unwrap().render(&[], &options).unwrap();

    // Key order kept, no HTML escaping, ", " and ": ", non-ASCII kept, floats as repr().
    assert_eq!(
        render("{{ x | tojson }}"),
        r#"{"z": "<a> & 'b' \"c\"", "a": [1, 2.5, 1e+20, true, null], "é": "naïve ✓ 😀", "e": {}, "l": []}"#
    );
    assert_eq!(render("{{ x.a | tojson(indent=2) }}"), "[\n  1,\n  2.5,\n  1e+20,\n  true,\n  null\n]");
    assert_eq!(render("{{ x.e | tojson(indent=2) }}{{ x.l | tojson(indent=2) }}"), "{}[]");
    assert_eq!(render("{{ x['é'] | tojson(ensure_ascii=true) }}"), r#""na\u00efve \u2713 \ud83d\ude00""#);
    assert_eq!(render("{{ x.a | tojson(separators=(',', ':')) }}"), "[1,2.5,1e+20,true,null]");
    assert_eq!(
        render("{{ x | tojson(sort_keys=true) }}"),
        r#"{"a": [1, 2.5, 1e+20, true, null], "e": {}, "l": [], "z": "<a> & 'b' \"c\"", "é": "naïve ✓ 😀"}"#
    );
    assert_eq!(render(r#"{{ "a\nb\t\u0001" | tojson }}"#), r#""a\nb\t\u0001""#);
    // Serialising something JSON cannot hold is an error, as in Python.
    let err = ChatTemplate::new("{{ nothing | tojson }}").unwrap().render(&[], &options).unwrap_err();
    assert!(matches!(err, TemplateError::Render(ref m) if m.contains("not JSON serializable")), "{err}");
}

#[test]
fn python_string_methods_work() {
    let source = "{{ '  Be brief.  '.strip() }}|{{ 'hello world'.title() }}|{{ 'a,b,c'.split(',') | join('+') }}|\
                  {{ 'Hi'.startswith('H') }}|{{ 'Hi'.endswith('x') }}|{{ 'abc'.upper() }}|{{ ' x '.lstrip() }}.";
    assert_eq!(render_str(source).unwrap(), "Be brief.|Hello World|a+b+c|True|False|ABC|x .");
}

#[test]
fn values_print_as_python_prints_them() {
    assert_eq!(
        render_str("{{ none }}|{{ true }}|{{ 1.0 }}|{{ [1, 'a', none] }}|{{ {'k': false} }}|{{ messages[0] }}")
            .unwrap(),
        "None|True|1.0|[1, 'a', None]|{'k': False}|{'role': 'user', 'content': 'Hi'}"
    );
}

#[test]
fn whitespace_and_undefined_behave_like_jinja2() {
    // trim_blocks and lstrip_blocks.
    assert_eq!(
        render_str("{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}")
            .unwrap(),
        "Hi\n"
    );
    // A single trailing newline is dropped (keep_trailing_newline=False).
    assert_eq!(render_str("x\n").unwrap(), "x");
    assert_eq!(render_str("x\n\n").unwrap(), "x\n");
    // Undefined is lenient: prints as nothing, is false, is not defined.
    assert_eq!(
        render_str("[{{ nope }}]{% if nope %}yes{% else %}no{% endif %}{{ nope is defined }}{{ messages[0].tool_calls is defined }}").unwrap(),
        "[]noFalseFalse"
    );
    // `tools` and `documents` are passed as None, as transformers passes them.
    assert_eq!(
        render_str("{{ tools is defined }} {{ tools is none }} {{ documents is none }}").unwrap(),
        "True True True"
    );
    // Loop controls.
    assert_eq!(
        render_str("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}").unwrap(),
        "012"
    );
}

#[test]
fn extra_arguments_reach_the_template() {
    let mut options = opts();
    options.add_generation_prompt = true;
    options.tools = Some(vec![json!({"type": "function", "function": {"name": "f"}})]);
    options.extra.insert("tools_in_user_message".into(), json!(false));
    let text = compile("llama32").render(&user("Hi"), &options).unwrap();
    assert!(text.contains("You have access to the following functions."), "{text}");
    assert!(
        text.contains("{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"f\"\n    }\n}"),
        "{text}"
    );

    options.extra.insert("bos_token".into(), json!("x"));
    let err = compile("llama32").render(&user("Hi"), &options).unwrap_err();
    assert_eq!(err, TemplateError::ReservedArgument("bos_token".into()));
}

#[test]
fn bad_templates_and_render_failures_are_errors() {
    assert!(matches!(ChatTemplate::new("{% for m in messages %}"), Err(TemplateError::Syntax(_))));
    assert!(matches!(ChatTemplate::new("{{ 1 + }}"), Err(TemplateError::Syntax(_))));
    assert!(matches!(render_str("{{ nope.attr }}"), Err(TemplateError::Render(_))));
    assert!(
        matches!(render_str("{{ raise_exception('no ' + 'way') }}"), Err(TemplateError::Raised(m)) if m == "no way")
    );
}

#[test]
fn sha256_is_of_the_source_text() {
    let template = ChatTemplate::new("{{ bos_token }}").unwrap();
    // printf '{{ bos_token }}' | sha256sum
    assert_eq!(template.sha256(), parallax_core::sha256_hex(b"{{ bos_token }}"));
    assert_eq!(template.sha256().len(), 64);
    assert_ne!(template.sha256(), ChatTemplate::new("{{ bos_token }}\n").unwrap().sha256());
}
