#!/usr/bin/env bash
# Peak memory of local models: one job over two models (SmolLM2, then Gemma 3: one is
# resident at a time) against a job over the larger model alone, through the real CLI.
# Target: the two-model peak within 10% of the larger model alone.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
bash scripts/fetch-models.sh >/dev/null
cargo build --quiet -p parallax
bin=$PWD/target/debug/parallax
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp examples/local.yaml "$dir/"
job() {
  printf 'name: mem-%s\nquestions:\n  - {id: a, text: The sky is}\n  - {id: b, text: Water is}\n  - {id: c, text: Fire is}\nmodels: [%s]\nregions: [laptop]\nprompt: {mode: raw}\nsampling: {temperature: 0, max_tokens: 16}\n' "$1" "$2"
}
job larger gemma3-270m >"$dir/larger.yaml"
job both "smollm2-135m, gemma3-270m" >"$dir/both.yaml"
cd "$dir"
for _ in $(seq "$runs"); do
  for j in larger both; do
    rm -f m.db*
    /usr/bin/time -f "$j %M" "$bin" --quiet --db m.db --config local.yaml run "$j.yaml" 2>>rss.txt >/dev/null
  done
done
python3 - rss.txt <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.split() and l.split()[0] in ("larger", "both")]
med = {k: statistics.median(int(v) for n, v in rows if n == k) / 1024 for k in ("larger", "both")}
print(f"peak RSS, median of {len(rows)//2}: Gemma 3 alone {med['larger']:.1f} MiB; SmolLM2 + Gemma 3 in one job {med['both']:.1f} MiB; ratio {med['both']/med['larger']:.3f} (target <= 1.10)")
PY
