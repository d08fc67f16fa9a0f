#!/usr/bin/env bash
# The main job on the embedded defaults: builds parallax, starts a stub fleet of three
# OpenAI-compatible "regions" on loopback, runs examples/regional-refusals.yaml against it,
# and prints where the answers diverge. Run it again: the job is complete, nothing is re-run.
#
# The stub stands in for remote endpoints (`scripts/quickstart.sh` asks a real local model);
# point examples/parallax.yaml at real servers (vLLM, llama.cpp, Ollama, hosted APIs) to ask real models.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building parallax (first build takes a few minutes on 2 cores)" >&2
cargo build --quiet -p parallax -p parallax-stub
bin=target/debug

stub_log=$(mktemp)
catalog=$(mktemp --suffix=.yaml)
# Free ports, so the demo never collides with anything already listening.
"$bin/parallax-stub" \
  --listen us-east=127.0.0.1:0 --listen eu-west=127.0.0.1:0 --listen ap-east=127.0.0.1:0 \
  --latency-ms 150 --refuse bomb --refuse-in ap-east=censor --refuse-in ap-east=tiananmen >"$stub_log" 2>&1 &
stub=$!
trap 'kill $stub 2>/dev/null || true; rm -f "$stub_log" "$catalog"' EXIT
for _ in $(seq 50); do
  [ "$(grep -c '^listening' "$stub_log" || true)" = 3 ] && break
  kill -0 $stub 2>/dev/null || { cat "$stub_log" >&2; exit 3; }
  sleep 0.1
done
# examples/parallax.yaml names ports 18001-18003; point it at the ports the stub got.
cp examples/parallax.yaml "$catalog"
for pair in us-east=18001 eu-west=18002 ap-east=18003; do
  region=${pair%=*} port=${pair#*=}
  addr=$(sed -n "s/^listening region=$region addr=//p" "$stub_log")
  sed -i "s|http://127.0.0.1:$port/v1|http://$addr/v1|" "$catalog"
done
echo "==> stub fleet up: $(grep '^listening' "$stub_log" | tr '\n' ' ')(150 ms latency)" >&2

export PARALLAX_CONFIG="$catalog" PARALLAX_DB="${PARALLAX_DB:-parallax.db}"
spec=examples/regional-refusals.yaml
"$bin/parallax" plan "$spec" | head -4
status=0
"$bin/parallax" run "$spec" || status=$?
job=$("$bin/parallax" plan "$spec" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])' 2>/dev/null \
  || "$bin/parallax" status --format jsonl | head -1 | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo
"$bin/parallax" report "$job"
"$bin/parallax" report "$job" --format html -o report.html
echo "==> wrote report.html (open it in a browser: heatmap, intervals, answers side by side)" >&2
exit $status
