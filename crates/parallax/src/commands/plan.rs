//! `parallax plan`: the exact executions of a spec, and what each will send.

use serde_json::json;

use crate::cli::{Global, PlanArgs, PlanFormat};
use crate::exit::{Code, Failure, Outcome};
use crate::output;
use parallax_app::load;

pub async fn run(global: &Global, args: &PlanArgs) -> Outcome {
    let (spec, _catalog, plan, local) = load::plan(&args.spec, &global.config)?;
    if !local.is_empty() && spec.prompt.mode == parallax_core::Mode::Chat && !global.quiet {
        control_token_note(&spec);
    }
    super::warn_ignored_extras(global, &spec, &local);
    let recorded = match super::open_existing_store(global).await? {
        Some(store) => store.current_job(&plan.base_job_id).await?,
        None => None,
    };
    let job_id = recorded.as_ref().map_or(plan.base_job_id.clone(), |j| j.id.clone());
    match args.format {
        PlanFormat::Json => {
            let items: Vec<_> = plan
                .items()
                .map(|i| {
                    let mut v = serde_json::to_value(&i).unwrap_or_default();
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("request".into(), i.request());
                    }
                    v
                })
                .collect();
            let doc = json!({
                "job_id": job_id,
                "recorded": recorded.is_some(),
                "executions": plan.len(),
                "questions": spec.questions.len(),
                "models": spec.models,
                "regions": spec.regions,
                "samples": spec.samples,
                "parity": plan.parity,
                "items": items,
            });
            let text = serde_json::to_string_pretty(&doc).map_err(|e| Failure::Internal(e.into()))?;
            output::stdout(&(text + "\n")).map_err(|e| Failure::Internal(e.into()))?;
        }
        PlanFormat::Table => {
            let mut out = String::new();
            let state = if recorded.is_some() { "recorded: `parallax run` continues it" } else { "new" };
            out.push_str(&format!("job {job_id} ({state})\n"));
            let s = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            out.push_str(&format!(
                "{} × {} × {} × {} = {} executions\n",
                s(spec.questions.len(), "question"),
                s(spec.models.len(), "model"),
                s(spec.regions.len(), "region"),
                s(spec.samples as usize, "sample"),
                plan.len()
            ));
            let p = &plan.parity;
            if p.undeclared > 0 {
                out.push_str(&format!(
                    "parity: {} of {} question×model groups DIFFER across regions without a declared override\n",
                    p.undeclared, p.groups
                ));
            } else if p.declared_overrides > 0 {
                out.push_str(&format!(
                    "parity: {} of {} question×model groups differ only by the declared system_by_region override ({})\n",
                    p.declared_overrides,
                    p.groups,
                    p.override_regions.join(", ")
                ));
            } else {
                out.push_str(&format!(
                    "parity: every region sends identical messages for all {} question×model groups\n",
                    p.groups
                ));
            }
            if p.rendered_differently > 0 {
                out.push_str(&format!(
                    "parity: {} of them are encoded differently by endpoint kind (chat messages, a local model's template): compared as messages and sampling\n",
                    p.rendered_differently
                ));
            }
            out.push('\n');
            let rows: Vec<Vec<String>> = plan
                .items()
                .map(|i| {
                    vec![
                        i.key.question_id.clone(),
                        i.key.model_id.clone(),
                        i.key.region.clone(),
                        i.key.sample.to_string(),
                        i.endpoint.clone(),
                        i.requested_model.clone(),
                        i.request_sha256[..12].to_owned(),
                    ]
                })
                .collect();
            out.push_str(&output::table(
                &["QUESTION", "MODEL", "REGION", "SAMPLE", "ENDPOINT", "SENDS MODEL", "REQUEST SHA256"],
                &rows,
            ));
            output::stdout(&out).map_err(|e| Failure::Internal(e.into()))?;
        }
    }
    Ok(Code::Success)
}

/// Questions that write chat markup (`<|im_start|>`, `[INST]`, …): in a local chat prompt
/// their text is tokenized as plain text and cannot forge a turn, unless
/// `prompt.parse_special` asks for it to be parsed as a server would.
fn control_token_note(spec: &parallax_core::JobSpec) {
    const MARKUP: [&str; 8] = [
        "<|im_start|>",
        "<|im_end|>",
        "[INST]",
        "[/INST]",
        "<start_of_turn>",
        "<end_of_turn>",
        "<|begin_of_text|>",
        "<|eot_id|>",
    ];
    let with: Vec<&str> =
        spec.questions.iter().filter(|q| MARKUP.iter().any(|m| q.text.contains(m))).map(|q| q.id.as_str()).collect();
    let Some(first) = with.first() else { return };
    let n = with.len();
    let them =
        if n == 1 { format!("question `{first}` contains") } else { format!("{n} questions (`{first}`, …) contain") };
    if spec.prompt.parse_special {
        eprintln!(
            "warning: {them} chat control tokens and `prompt.parse_special` is on: local models parse them, so a question can open a turn of its own"
        );
    } else {
        eprintln!(
            "note: {them} chat control tokens; local models read them as plain text, so no question can forge a turn (`prompt.parse_special: true` parses them as a server that tokenizes the whole prompt would)"
        );
    }
}
