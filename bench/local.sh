#!/usr/bin/env bash
# Local inference throughput: parallax's local-gguf engine against llama.cpp itself (its
# Python bindings, llama-cpp-python, built from source for this CPU), on the same GGUF
# files, prompt and thread count, alternating runs in one session. Prints the medians and
# the ratio parallax / llama.cpp for prompt and generation tokens/s.
#
#   bash bench/local.sh                 # both quickstart models, 2 threads
#   THREADS=1 RUNS=5 bash bench/local.sh
#
# llama-cpp-python is a benchmark-only dependency, installed into bench/.venv (the first
# time compiles llama.cpp: several minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2} runs=${RUNS:-3} prompt=${PROMPT_TOKENS:-256} gen=${GEN_TOKENS:-128}
models="${PARALLAX_MODELS:-$HOME/.cache/parallax/models}"
venv=${BENCH_VENV:-bench/.venv}

bash scripts/fetch-models.sh
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  echo "==> installing llama-cpp-python 0.3.36 into $venv (compiles llama.cpp)" >&2
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install -q llama-cpp-python==0.3.36
fi
cargo build --quiet -p parallax-local --example throughput
ours=target/debug/examples/throughput

out=$(mktemp)
for file in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
  for _ in $(seq "$runs"); do
    "$ours" "$models/$file" --threads "$threads" --prompt-tokens "$prompt" --gen-tokens "$gen" --runs 1 >>"$out"
    "$venv/bin/python" bench/llama_cpp_python.py "$models/$file" "$threads" "$prompt" "$gen" 1 >>"$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'model':34} {'impl':18} {'prompt tok/s':>12} {'gen tok/s':>10}")
for model in sorted({r["model"] for r in rows}):
    med = {}
    for impl in ("parallax-local", "llama-cpp-python"):
        rs = [r for r in rows if r["model"] == model and r["impl"] == impl]
        med[impl] = (statistics.median(r["prompt_tps"] for r in rs), statistics.median(r["gen_tps"] for r in rs))
        print(f"{model:34} {impl:18} {med[impl][0]:12.1f} {med[impl][1]:10.1f}   (n={len(rs)}, {rs[0]['prompt_tokens']} prompt tokens, {rs[0]['gen_tokens']} generated, {rs[0]['threads']} threads)")
    p = med["parallax-local"][0] / med["llama-cpp-python"][0]
    g = med["parallax-local"][1] / med["llama-cpp-python"][1]
    print(f"{model:34} {'ratio':18} {p:12.3f} {g:10.3f}")
PY
rm -f "$out"
