//! Prompt and generation tokens/s of the `local-gguf` engine on one GGUF file, as JSON
//! lines — the parallax side of `bench/local.sh`, which runs llama.cpp's own Python
//! bindings on the same file, prompt and thread count beside it.
//!
//! ```text
//! cargo run -p parallax-local --example throughput -- MODEL.gguf --threads 2 --prompt-tokens 256 --gen-tokens 128 --runs 3
//! ```
//!
//! The prompt is the same deterministic text on both sides; generation is greedy and
//! ignores end-of-generation, so every run decodes exactly `--gen-tokens` tokens.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use parallax_local::{Engine, Generation, Sampling, sha256_file};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect(name))
}

/// A prompt of about `n` tokens: the same words `bench/llama_cpp_python.py` builds.
pub fn prompt_text(words: usize) -> String {
    let base = "The quick brown fox jumps over the lazy dog while the river runs past old stone bridges";
    base.split(' ').cycle().take(words).collect::<Vec<_>>().join(" ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = PathBuf::from(args.get(1).expect("usage: throughput MODEL.gguf [--threads N] ..."));
    let threads = arg(&args, "--threads", 2);
    let prompt_tokens = arg(&args, "--prompt-tokens", 256);
    let gen_tokens = arg(&args, "--gen-tokens", 128);
    let runs = arg(&args, "--runs", 3);
    let engine = Engine::global();
    let sha = sha256_file(&file).expect("readable model");
    // Find the word count whose tokenization (with BOS) is the requested prompt length.
    let mut words = prompt_tokens;
    let ids = |w: usize| engine.tokenize(&file, &prompt_text(w), true, false).expect("tokenize").len();
    while ids(words) > prompt_tokens {
        words -= 1;
    }
    let prompt = prompt_text(words);
    let never = AtomicBool::new(false);
    for run in 0..=runs {
        let g = Generation {
            file: &file,
            file_sha256: Some(&sha),
            gguf_sha256: &sha,
            prompt: &prompt,
            add_bos: true,
            parse_special: false,
            plain: &[],
            sampling: Sampling {
                temperature: 0.0,
                top_p: 1.0,
                max_tokens: gen_tokens,
                seed: 0,
                stop: Vec::new(),
                ignore_eos: true,
                grammar: None,
                extra: Default::default(),
            },
            threads,
        };
        let out = engine.generate(&g, None, &never).expect("generation");
        if run == 0 {
            continue; // warm-up: page the weights in
        }
        // Generation time spans the samples and the n - 1 decodes after the first token.
        println!(
            "{{\"impl\":\"parallax-local\",\"model\":{:?},\"threads\":{threads},\"run\":{run},\"prompt_tokens\":{},\"gen_tokens\":{},\"prompt_tps\":{:.2},\"gen_tps\":{:.2}}}",
            file.file_name().unwrap().to_string_lossy(),
            out.prompt_tokens,
            out.completion_tokens,
            out.prompt_tokens as f64 * 1e3 / out.prompt_ms,
            (out.completion_tokens - 1) as f64 * 1e3 / out.generation_ms,
        );
    }
}
