//! `parallax doctor`: checks that what a job sends is what the model should see.
//!
//! * Raw mode: sentinel prompts ("Translate to Pig Latin: hello world", "Write a JSON
//!   object with keys a and b") sent as raw text. A base model continues the text; a model
//!   that *follows* them is instruction-tuned (or a template leaked in on the way), so raw
//!   results from it do not show base-model behaviour.
//! * Chat mode: each local model's rendered prompt, tokenized as a job would, must not
//!   start with two BOS tokens (a template that writes BOS, plus a tokenizer that adds one).
//!
//! * Raw mode also gets the four classic probes (a known fact, three primes, the seasons, a
//!   simple completion): a model that continues none of them sensibly is not being fed what
//!   it expects.
//! * Remote endpoints: reachable, key accepted, `GET /models` lists the model (where the
//!   server has that route), one tiny completion answers, and the model it reports is the one
//!   asked for (or a declared alias).
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

/// The classic probes: raw text whose continuation a working model knows.
const PROBES: [(&str, &str); 4] = [
    ("fact", "The capital of France is"),
    ("primes", "The first three prime numbers are"),
    ("seasons", "The four seasons of the year are"),
    ("completion", "Once upon a"),
];

/// Whether a continuation of a probe says what the probe expects.
pub fn continues(probe: &str, answer: &str) -> bool {
    let a = answer.to_lowercase();
    let words: Vec<&str> = a.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    match probe {
        "fact" => words.contains(&"paris"),
        "primes" => {
            ["2", "3", "5"].iter().all(|p| words.contains(p))
                || ["two", "three", "five"].iter().all(|p| words.contains(p))
        }
        "seasons" => {
            let named = ["spring", "summer", "winter"].iter().filter(|s| words.contains(s)).count()
                + usize::from(words.contains(&"autumn") || words.contains(&"fall"));
            named >= 3
        }
        "completion" => words.first() == Some(&"time"),
        _ => false,
    }
}

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
    checks.extend(remote_checks(&catalog, &global.config, &pairs).await?);
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
        for (name, prompt) in SENTINELS.iter().chain(&PROBES).copied() {
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
        let probes = answers.split_off(SENTINELS.len());
        checks.push(sentinel_check(model, region, &endpoint.name, answers));
        checks.push(probe_check(model, region, &endpoint.name, probes));
    }
    report(global, args, &checks)
}

/// Per HTTP endpoint: reachable, key accepted, models listed (the run's preflight); per
/// model: one tiny completion answers, as the model asked for.
async fn remote_checks(
    catalog: &Catalog,
    catalog_path: &std::path::Path,
    pairs: &[(String, String)],
) -> Result<Vec<Check>, Failure> {
    use parallax_app::preflight::{self, Verdict};
    let mut checks = Vec::new();
    for c in preflight::check(catalog, catalog_path, pairs).await? {
        let models: Vec<&str> = pairs
            .iter()
            .filter(|(m, r)| *r == c.region && catalog.resolve(m, r).is_some_and(|(e, _)| e.name == c.endpoint))
            .map(|(m, _)| m.as_str())
            .collect();
        checks.push(Check {
            model: models.join(","),
            region: c.region.clone(),
            endpoint: c.endpoint.clone(),
            check: "endpoint",
            ok: c.verdict != Verdict::Fatal,
            detail: format!("{}{}", if c.verdict == Verdict::Warning { "warning: " } else { "" }, c.detail),
            answers: Vec::new(),
        });
        if c.verdict == Verdict::Fatal {
            continue;
        }
        for model in models {
            let (endpoint, entry) = catalog.resolve(model, &c.region).expect("selected from the catalog");
            let provider = parallax_app::providers::http_provider(endpoint, &c.region, catalog_path, 1)?;
            let body = match endpoint.kind {
                EndpointKind::OpenAiChat => json!({"model": entry.name, "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": "Reply with the single word OK."}]}),
                _ => json!({"model": entry.name, "prompt": "OK", "max_tokens": 8, "temperature": 0}),
            }
            .to_string();
            let started = std::time::Instant::now();
            let reply = parallax_providers::Provider::send(
                &provider,
                parallax_providers::SendRequest {
                    kind: endpoint.kind,
                    body: body.as_bytes(),
                    idempotency_key: &parallax_core::sha256_hex(body.as_bytes()),
                    timeout: Duration::from_secs(60),
                },
            )
            .await;
            let ms = started.elapsed().as_millis();
            let check = |check, ok, detail: String| Check {
                model: model.to_owned(),
                region: c.region.clone(),
                endpoint: c.endpoint.clone(),
                check,
                ok,
                detail,
                answers: Vec::new(),
            };
            match reply {
                Err(e) => checks.push(check("completion", false, format!("a tiny completion failed: {e}"))),
                Ok(r) => {
                    let said = r.text.as_deref().unwrap_or("").chars().take(60).collect::<String>();
                    checks.push(check("completion", true, format!("answered in {ms} ms: {said:?}")));
                    let named = std::iter::once(&entry.name).chain(&entry.aliases);
                    checks.push(match r.reported_model {
                        None => check("model-reported", true, "unverified: the server names no model".into()),
                        Some(m) if named.clone().any(|n| *n == m) => {
                            check("model-reported", true, format!("answered as `{m}`"))
                        }
                        Some(m) => check(
                            "model-reported",
                            false,
                            format!("MISMATCH: asked for `{}`, answered as `{m}` (declare it in `aliases` if it is the same model)", entry.name),
                        ),
                    });
                }
            }
        }
    }
    Ok(checks)
}

fn probe_check(model: &str, region: &str, endpoint: &str, answers: Vec<(&str, String)>) -> Check {
    let sensible = answers.iter().filter(|(n, a)| continues(n, a)).count();
    Check {
        model: model.to_owned(),
        region: region.to_owned(),
        endpoint: endpoint.to_owned(),
        check: "raw-probes",
        // Informational: a small model may not know them all.
        ok: true,
        detail: format!(
            "{sensible} of {} classic probes continued as expected{}",
            answers.len(),
            if sensible == 0 { ": none — is the model fed what it expects (a raw prompt, its BOS)?" } else { "" }
        ),
        answers: answers.into_iter().map(|(n, a)| json!({"sentinel": n, "answer": a})).collect(),
    }
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
                let prompt = local_prompt(
                    &unit.info,
                    Some(&template),
                    local::today(),
                    Some("You are a helpful assistant."),
                    "Hello",
                    false,
                )
                .map_err(|e| Failure::input(anyhow!("{}: the chat template fails: {e}", unit.file.display())))?;
                let add_bos = prompt.add_bos;
                let plain = prompt.plain.unwrap_or_default();
                let ids =
                    engine.tokenize_prompt(&unit.file, &prompt.text, add_bos, true, &plain).map_err(engine_err)?;
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
        for (name, prompt) in SENTINELS.iter().chain(&PROBES).copied() {
            let raw = local_prompt(&unit.info, None, local::today(), None, prompt, false)
                .map_err(|e| Failure::Internal(anyhow!("{e}")))?;
            let (text, add_bos) = (raw.text, raw.add_bos);
            let g = parallax_local::Generation {
                file: &unit.file,
                file_sha256: Some(&unit.info.gguf_sha256),
                gguf_sha256: &unit.info.gguf_sha256,
                prompt: &text,
                add_bos,
                parse_special: false,
                plain: &[],
                sampling: parallax_local::Sampling {
                    temperature: 0.0,
                    top_p: 1.0,
                    max_tokens,
                    seed: 0,
                    stop: Vec::new(),
                    ignore_eos: false,
                    grammar: None,
                    extra: Default::default(),
                },
                threads,
            };
            let out =
                engine.generate(&g, Some(Duration::from_secs(300)), &AtomicBool::new(false)).map_err(engine_err)?;
            answers.push((name, out.text));
        }
        let probes = answers.split_off(SENTINELS.len());
        checks.push(sentinel_check(&unit.model_id, &unit.region, &endpoint, answers));
        checks.push(probe_check(&unit.model_id, &unit.region, &endpoint, probes));
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
    use super::{continues, follows};

    #[test]
    fn probe_continuations_are_read() {
        assert!(continues("fact", " Paris, the largest city"));
        assert!(!continues("fact", " a city in Europe"));
        assert!(continues("primes", " 2, 3 and 5."));
        assert!(!continues("primes", " 1, 2 and 3"));
        assert!(continues("seasons", " spring, summer, fall and winter"));
        assert!(continues("completion", " time, there lived"));
        assert!(!continues("completion", " hill"));
    }

    #[test]
    fn sentinel_answers_are_told_apart() {
        assert!(follows("pig-latin", "Ellohay orldway!"));
        assert!(!follows("pig-latin", "!\n\nHello, my name is Pig Latin."));
        assert!(follows("json", "Sure:\n```json\n{\"a\": 1, \"b\": 2}\n```"));
        assert!(!follows("json", " and values a1, b1, b2"));
        assert!(!follows("json", "{a, b}"));
    }
}
