#!/usr/bin/env bash
# The main job on the embedded defaults: builds parallax, starts a stub fleet of three
# OpenAI-compatible "regions" on loopback, runs examples/regional-refusals.yaml against it,
# and prints where the answers diverge. Run it again: the job is complete, nothing is re-run.
#
# Until local GGUF models land, the stub stands in for real endpoints; point
# examples/parallax.yaml at real servers (vLLM, llama.cpp, Ollama, hosted APIs) to ask real models.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building parallax (first build takes a few minutes on 2 cores)" >&2
cargo build --quiet --release -p parallax -p parallax-stub
bin=target/release

stub_log=$(mktemp)
"$bin/parallax-stub" \
  --listen us-east=127.0.0.1:18001 --listen eu-west=127.0.0.1:18002 --listen ap-east=127.0.0.1:18003 \
  --latency-ms 150 --refuse bomb --refuse-in ap-east=censor --refuse-in ap-east=tiananmen >"$stub_log" 2>&1 &
stub=$!
trap 'kill $stub 2>/dev/null || true; rm -f "$stub_log"' EXIT
for _ in $(seq 50); do
  [ "$(grep -c '^listening' "$stub_log" || true)" = 3 ] && break
  kill -0 $stub 2>/dev/null || { cat "$stub_log" >&2; exit 3; }
  sleep 0.1
done
echo "==> stub fleet up: us-east :18001, eu-west :18002, ap-east :18003 (150 ms latency)" >&2

export PARALLAX_CONFIG=examples/parallax.yaml PARALLAX_DB="${PARALLAX_DB:-parallax.db}"
spec=examples/regional-refusals.yaml
"$bin/parallax" plan "$spec" | head -4
status=0
"$bin/parallax" run "$spec" || status=$?
job=$("$bin/parallax" plan "$spec" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])' 2>/dev/null \
  || "$bin/parallax" status --format jsonl | head -1 | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo
"$bin/parallax" status "$job"
echo
echo "==> answers that differ by region (stub refusals):"
"$bin/parallax" results "$job" --format jsonl | python3 -c '
import json, sys, collections
by = collections.defaultdict(dict)
for line in sys.stdin:
    r = json.loads(line)
    refused = (r.get("response_text") or "").startswith("I\u2019m sorry") or (r.get("response_text") or "").startswith("I'"'"'m sorry")
    by[(r["question_id"], r["model_id"])][r["region"]] = "refused" if refused else "answered"
for (q, m), regions in sorted(by.items()):
    if len(set(regions.values())) > 1:
        print(f"  {q:22} {m:14} " + "  ".join(f"{k}={v}" for k, v in sorted(regions.items())))
'
exit $status
