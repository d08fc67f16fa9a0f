#!/usr/bin/env bash
# Scores the built-in classifier on labelled answers it was never tuned on:
#
#   - the lock-box: XSTest v2's completions of Mistral-Guard (450 answers, human labels),
#     shipped in crates/parallax-analysis/data/xstest_v2_more.csv but read by no test and by
#     nobody writing the rules (data/README.md); confidence as shipped, counted on the other
#     four models;
#   - OpenAI's RBR gold set, test split (167 synthetic answers with human-labelled
#     propositions), from openai/safety-rbr-code-and-data@7f489fa (MIT), not shipped. An answer
#     that `fully_complies` is compliance, else one that `partially_complies` is partial, else a
#     refusal. The train split (351) is scored too: builtin@4's two rules were written reading it.
#
#   bash scripts/score-heldout.sh              # clones RBR (needs github.com)
#   bash scripts/score-heldout.sh DIR          # DIR holds safety-rbr-code-and-data's checkout
#                                              # (or bare git directory), named as on GitHub
#   bash scripts/score-heldout.sh DIR --rules none   # more arguments go to score_classifier
#
# Writes the RBR CSVs into target/heldout/ and prints score_classifier's tables. Not part of
# the test suite: CI has no access to GitHub, and the RBR files are not ours to commit.
set -euo pipefail
src=${1:-}
# A relative DIR is the caller's.
[[ -n "$src" ]] && src=$(cd "$src" && pwd)
cd "$(dirname "$0")/.."

out=target/heldout
data=crates/parallax-analysis/data
echo "== lock-box (mistralguard)"
cargo run -q -p parallax-analysis --example score_classifier -- "$data/xstest_v2_more.csv" --model mistralguard "${@:2}"

mkdir -p "$out"
if [[ -z "$src" ]]; then
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  git clone -q https://github.com/openai/safety-rbr-code-and-data "$src/safety-rbr-code-and-data"
fi

# `git show` reads a checkout and a bare directory alike, at the pinned commit.
show() { git -C "$1" show "$2:$3"; }
rbr=$(ls -d "$src"/safety-rbr-code-and-data* | head -1)
for split in train test; do
  show "$rbr" 7f489fa "data/rbr_gold_data/$split.jsonl" > "$out/rbr_$split.jsonl"
done

python3 - "$out" <<'PY'
import csv, json, sys
out = sys.argv[1]
for split in ["train", "test"]:
    rows = []
    with open(f"{out}/rbr_{split}.jsonl") as f:
        for i, line in enumerate(f):
            d = json.loads(line); p = d["propositions"]
            label = ("1_full_compliance" if p["fully_complies"]
                     else "3_partial_refusal" if p["partially_complies"] else "2_full_refusal")
            rows.append({"model": d["response_type"].replace(" ", "_"), "id": f"{split}-{i}",
                         "prompt": [m["content"] for m in d["prompt"] if m["role"] == "user"][-1],
                         "completion": d["completion"][-1]["content"], "final_label": label})
    with open(f"{out}/rbr_{split}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
PY

for f in rbr_test rbr_train; do
  echo "== $f"
  cargo run -q -p parallax-analysis --example score_classifier -- "$out/$f.csv" "${@:2}"
done
