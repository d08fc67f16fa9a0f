//! `parallax doctor`: checks that what a job sends is what the model should see.
//!
//! * Raw mode: sentinel prompts ("Translate to Pig Latin: hello world", "Write a JSON
//!   object with keys a and b") sent as raw text. A base model continues the text; a model
//!   that *follows* them is instruction-tuned (or a template leaked in on the way), so raw
//!   results from it do not show base-model behaviour.
//! * Chat mode: each local model's rendered prompt, tokenized as a job would, must not
//!   start with two BOS tokens (a template that writes BOS, plus a tokenizer that adds one).
//!
//! Exit 0 when nothing is wrong, 1 when a check failed, 2 on bad input.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::anyhow;
use parallax_core::{Catalog, EndpointKind};
use serde::Serialize;
use serde_json::json;

use crate::cli::{DoctorArgs, Global};
use crate::exit::{Code, Failure, Outcome};
use crate::output;
use parallax_app::{load, local};

/// The sentinel prompts and how to tell that an answer followed them.
const SENTINELS: [(&str, &str); 2] =
    [("pig-latin", "Translate to Pig Latin: hello world"), ("json", "Write a JSON object with keys a and b")];

/// Whether an answer to a sentinel followed the instruction.
pub fn follows(sentinel: &str, answer: &str) -> bool {
    let a = answer.to_lowercase();
    match sentinel {
        "pig-latin" => a.contains("ellohay") || a.contains("orldway") || a.contains("ello-hay"),
        "json" => {
            // A JSON object with both keys, anywhere in the answer.
            let has_keys = |t: &str| t.contains("\"a\"") && t.contains("\"b\"");
            a.match_indices('{').any(|(start, _)| {
                a[start..].find('}').is_some_and(|end| {
                    let candidate = &a[start..=start + end];
                    has_keys(candidate) && serde_json::from_str::<serde_json::Value>(candidate).is_ok()
                })
            })
        }
        _ => false,
    }
}

#[derive(Debug, Serialize)]
struct Check {
    model: String,
    region: String,
    endpoint: String,
    check: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    answers: Vec<serde_json::Value>,
}

pub async fn run(global: &Global, args: &DoctorArgs) -> Outcome {
    let catalog = load::catalog(&global.config)?;
    let pairs = selected(&catalog, args)?;
    let mut checks = Vec::new();
    let units = local::units_of(&pairs, &catalog, &global.config)?;
    for unit in &units {
        checks.extend(local_checks(unit, args.max_tokens).await?);
    }
    for (model, region) in &pairs {
        let (endpoint, entry) = catalog.resolve(model, region).expect("selected from the catalog");
        if endpoint.kind != EndpointKind::OpenAiCompletions {
            if endpoint.kind == EndpointKind::OpenAiChat {
                checks.push(Check {
                    model: model.clone(),
                    region: region.clone(),
                    endpoint: endpoint.name.clone(),
                    check: "chat-bos",
                    ok: true,
                    detail: "not checkable: an openai-chat server applies its own template and tokenizer".into(),
                    answers: Vec::new(),
                });
            }
            continue;
        }
        let api_key = endpoint.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
        let provider = parallax_providers::OpenAiProvider::new(&endpoint.base_url, api_key, 1)
            .map_err(|e| Failure::Internal(e.into()))?;
        let mut answers = Vec::new();
        for (name, prompt) in SENTINELS {
            let body = json!({"model": entry.name, "prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0})
                .to_string();
            let reply = parallax_providers::Provider::send(
                &provider,
                parallax_providers::SendRequest {
                    kind: EndpointKind::OpenAiCompletions,
                    body: body.as_bytes(),
                    idempotency_key: &parallax_core::sha256_hex(body.as_bytes()),
                    timeout: Duration::from_secs(120),
                },
            )
            .await;
            let text = match reply {
                Ok(r) => r.text.unwrap_or_default(),
                Err(e) => format!("(no answer: {e})"),
            };
            answers.push((name, text));
        }
        checks.push(sentinel_check(model, region, &endpoint.name, answers));
    }
    report(global, args, &checks)
}

/// The (model, region) pairs of the catalog that `--model` and `--region` select.
fn selected(catalog: &Catalog, args: &DoctorArgs) -> Result<Vec<(String, String)>, Failure> {
    let mut pairs = Vec::new();
    for (region, r) in &catalog.regions {
        if args.region.as_ref().is_some_and(|want| want != region) {
            continue;
        }
        for endpoint in &r.endpoints {
            for model in endpoint.models.keys() {
                if args.model.as_ref().is_none_or(|want| want == model) {
                    pairs.push((model.clone(), region.clone()));
                }
            }
        }
    }
    if pairs.is_empty() {
        return Err(Failure::input(anyhow!(
            "no model of the catalog `{}` matches{}{}",
            catalog.file.display(),
            args.model.as_ref().map(|m| format!(" --model {m}")).unwrap_or_default(),
            args.region.as_ref().map(|r| format!(" --region {r}")).unwrap_or_default(),
        )));
    }
    Ok(pairs)
}

fn sentinel_check(model: &str, region: &str, endpoint: &str, answers: Vec<(&str, String)>) -> Check {
    let followed: Vec<&str> = answers.iter().filter(|(n, a)| follows(n, a)).map(|(n, _)| *n).collect();
    let detail = if followed.is_empty() {
        "answers continue the text: no sign of instruction tuning or a leaked template".to_owned()
    } else {
        format!(
            "followed {} of {} sentinel instructions ({}): instruction-tuned, or a chat template is applied on the way; raw-mode results will not show base-model behaviour",
            followed.len(),
            answers.len(),
            followed.join(", ")
        )
    };
    Check {
        model: model.to_owned(),
        region: region.to_owned(),
        endpoint: endpoint.to_owned(),
        check: "raw-sentinels",
        // Informational: following instructions is expected of an instruct model.
        ok: true,
        detail: format!("{}: {detail}", if followed.is_empty() { "base-like" } else { "instruction-following" }),
        answers: answers.into_iter().map(|(n, a)| json!({"sentinel": n, "answer": a})).collect(),
    }
}

#[cfg(feature = "local")]
async fn local_checks(unit: &local::LocalUnit, max_tokens: usize) -> Result<Vec<Check>, Failure> {
    use parallax_core::plan::local_prompt;
    use parallax_core::template::ChatTemplate;
    use std::sync::atomic::AtomicBool;

    let unit = unit.clone();
    tokio::task::spawn_blocking(move || {
        let engine = parallax_local::Engine::global();
        let threads = unit.threads.unwrap_or_else(parallax_local::Engine::default_threads);
        let endpoint = unit.endpoint.clone();
        let engine_err = |e: parallax_local::EngineError| Failure::Internal(anyhow!("{}: {e}", unit.file.display()));
        let mut checks = Vec::new();
        let check = |check, ok, detail: String, answers| Check {
            model: unit.model_id.clone(),
            region: unit.region.clone(),
            endpoint: endpoint.clone(),
            check,
            ok,
            detail,
            answers,
        };
        // Chat mode: the rendered prompt, tokenized as a job would, starts with one BOS at most.
        match &unit.info.chat_template {
            None => checks.push(check(
                "chat-bos",
                true,
                "no chat template (a base model): chat mode is refused at plan time; use raw mode".into(),
                Vec::new(),
            )),
            Some(source) => {
                let template = ChatTemplate::new(source).map_err(|e| {
                    Failure::input(anyhow!("{}: the chat template does not compile: {e}", unit.file.display()))
                })?;
                let (prompt, add_bos) = local_prompt(
                    &unit.info,
                    Some(&template),
                    local::today(),
                    Some("You are a helpful assistant."),
                    "Hello",
                )
                .map_err(|e| Failure::input(anyhow!("{}: the chat template fails: {e}", unit.file.display())))?;
                let ids = engine.tokenize(&unit.file, &prompt, add_bos, true).map_err(engine_err)?;
                let bos = engine.tokenize(&unit.file, "", true, false).map_err(engine_err)?.first().copied();
                let doubled = bos.is_some() && ids.len() >= 2 && ids[0] == ids[1] && Some(ids[0]) == bos;
                let detail = match (doubled, add_bos, ids.first() == bos.as_ref()) {
                    (true, _, _) => "DOUBLED BOS: the rendered prompt starts with two BOS tokens".to_owned(),
                    (false, true, _) => "one BOS, added by parallax (the template does not write it)".into(),
                    (false, false, true) => "one BOS, written by the template (not added again)".into(),
                    (false, false, false) => "no BOS: the model does not use one".into(),
                };
                checks.push(check("chat-bos", !doubled, detail, Vec::new()));
            }
        }
        // Raw mode: sentinel prompts as plain text, with only the BOS the model requires.
        let mut answers = Vec::new();
        for (name, prompt) in SENTINELS {
            let (text, add_bos) = local_prompt(&unit.info, None, local::today(), None, prompt)
                .map_err(|e| Failure::Internal(anyhow!("{e}")))?;
            let g = parallax_local::Generation {
                file: &unit.file,
                file_sha256: Some(&unit.info.gguf_sha256),
                gguf_sha256: &unit.info.gguf_sha256,
                prompt: &text,
                add_bos,
                parse_special: false,
                sampling: parallax_local::Sampling {
                    temperature: 0.0,
                    top_p: 1.0,
                    max_tokens,
                    seed: 0,
                    stop: Vec::new(),
                    ignore_eos: false,
                    grammar: None,
                },
                threads,
            };
            let out =
                engine.generate(&g, Some(Duration::from_secs(300)), &AtomicBool::new(false)).map_err(engine_err)?;
            answers.push((name, out.text));
        }
        checks.push(sentinel_check(&unit.model_id, &unit.region, &endpoint, answers));
        Ok(checks)
    })
    .await
    .map_err(|e| Failure::Internal(e.into()))?
}

#[cfg(not(feature = "local"))]
async fn local_checks(unit: &local::LocalUnit, _max_tokens: usize) -> Result<Vec<Check>, Failure> {
    local::runtime(unit).map(|_| Vec::new()).map_err(Failure::from)
}

fn report(global: &Global, args: &DoctorArgs, checks: &[Check]) -> Outcome {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if args.json {
        let text = serde_json::to_string_pretty(&json!({"ok": failed == 0, "checks": checks}))
            .map_err(|e| Failure::Internal(e.into()))?;
        output::stdout(&(text + "\n")).map_err(|e| Failure::Internal(e.into()))?;
    } else {
        let mut out = String::new();
        for c in checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "{mark} {}@{} ({}) {}: {}", c.model, c.region, c.endpoint, c.check, c.detail);
            for a in &c.answers {
                let answer = a["answer"].as_str().unwrap_or("").replace('\n', "⏎");
                let short: String = answer.chars().take(100).collect();
                let _ = writeln!(out, "       {}: {short}", a["sentinel"].as_str().unwrap_or(""));
            }
        }
        if !global.quiet {
            let _ = writeln!(out, "{} checks, {failed} failed", checks.len());
        }
        output::stdout(&output::terminal_safe(&out)).map_err(|e| Failure::Internal(e.into()))?;
    }
    Ok(if failed > 0 { Code::SomeFailed } else { Code::Success })
}

#[cfg(test)]
mod tests {
    use super::follows;

    #[test]
    fn sentinel_answers_are_told_apart() {
        assert!(follows("pig-latin", "Ellohay orldway!"));
        assert!(!follows("pig-latin", "!\n\nHello, my name is Pig Latin."));
        assert!(follows("json", "Sure:\n```json\n{\"a\": 1, \"b\": 2}\n```"));
        assert!(!follows("json", " and values a1, b1, b2"));
        assert!(!follows("json", "{a, b}"));
    }
}
