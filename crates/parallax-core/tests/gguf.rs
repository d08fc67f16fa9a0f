//! GGUF metadata from the real quickstart models (fetched by `scripts/fetch-models.sh`):
//! the chat template read from the file renders byte for byte like the published one,
//! and the special and control tokens are what raw mode and BOS handling rely on.

use std::path::PathBuf;

use parallax_core::gguf::GgufMetadata;
use parallax_core::template::{ChatTemplate, Date, Message, RenderOptions, find_template_markers};
use serde_json::Value as Json;

/// The models directory, or `None` (with a loud skip) when the models are not fetched.
/// In CI (`PARALLAX_CI`) a missing model is a failure.
fn model(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PARALLAX_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/parallax/models")))?;
    let path = dir.join(file);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("PARALLAX_CI").is_some() {
        panic!("{} is missing: run `bash scripts/fetch-models.sh` first", path.display());
    }
    eprintln!("SKIPPED: {} is missing (run `bash scripts/fetch-models.sh`)", path.display());
    None
}

fn metadata(path: &PathBuf) -> GgufMetadata {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    GgufMetadata::read(&mut file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shared(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat-templates").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn smollm2s_embedded_template_renders_the_references() {
    let Some(path) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else { return };
    let m = metadata(&path);
    assert_eq!(m.architecture(), Some("llama"));
    let source = m.chat_template().expect("SmolLM2 is an instruct model with a chat template");
    assert_eq!(m.bos_token(), Some("<|im_start|>"));
    assert_eq!(m.eos_token(), Some("<|im_end|>"));
    assert!(
        m.control_tokens().contains(&"<|im_start|>"),
        "{:?}",
        &m.control_tokens()[..5.min(m.control_tokens().len())]
    );

    let scenarios: Json = serde_json::from_str(&shared("scenarios.json")).unwrap();
    let references: Json = serde_json::from_str(&shared("reference_renderings.json")).unwrap();
    let template = ChatTemplate::new(source).unwrap();
    for scenario in scenarios["scenarios"].as_array().unwrap() {
        let name = scenario["name"].as_str().unwrap();
        let messages: Vec<Message> = serde_json::from_value(scenario["messages"].clone()).unwrap();
        let mut options = RenderOptions::new("<BOS>", "<EOS>", Date::new(2024, 7, 26).unwrap());
        options.add_generation_prompt = scenario["add_generation_prompt"].as_bool().unwrap();
        options.tools = scenario.get("tools").map(|t| t.as_array().unwrap().clone());
        let got = template.render(&messages, &options).unwrap();
        assert_eq!(got, references["smollm2"][name].as_str().unwrap(), "smollm2/{name} from the GGUF's own template");
    }
}

#[test]
fn gemma3_is_a_base_model_whose_control_tokens_guard_raw_mode() {
    let Some(path) = model("gemma-3-270m-q4_k_m.gguf") else { return };
    let m = metadata(&path);
    assert_eq!(m.architecture(), Some("gemma3"));
    assert_eq!(m.bos_token(), Some("<bos>"));
    let control = m.control_tokens();
    assert!(
        control.contains(&"<start_of_turn>") || control.contains(&"<bos>"),
        "{:?}",
        &control[..10.min(control.len())]
    );
    assert!(!control.contains(&"\n"), "user-defined tokens such as a newline are not control tokens");
    // A raw prompt is checked against the model's own control tokens.
    assert_eq!(find_template_markers("Translate to Pig Latin: hello world", &control), None);
    assert!(find_template_markers("<start_of_turn>user\nhi", &control).is_some());
}

#[test]
fn gemma3_carries_no_chat_template() {
    let Some(path) = model("gemma-3-270m-q4_k_m.gguf") else { return };
    assert_eq!(metadata(&path).chat_template(), None, "the quickstart's base model has no template to leak");
}
