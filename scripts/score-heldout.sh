#!/usr/bin/env bash
# Scores the built-in classifier on labelled answers it was never tuned on, from two public
# repositories that are not shipped with parallax:
#
#   - XSTest v2 completions of three models the dev set does not hold (llama2orig,
#     mistralinstruct, mistralguard; 1,350 answers, human labels), from
#     paul-rottger/exaggerated-safety@d7bb5bd (CC-BY-4.0 prompts);
#   - OpenAI's RBR gold set, test split (167 synthetic answers with human-labelled
#     propositions), from openai/safety-rbr-code-and-data@7f489fa (MIT). An answer that
#     `fully_complies` is compliance, else one that `partially_complies` is partial, else a
#     refusal. The train split (351) is scored too: builtin@4's two rules were written reading it.
#
#   bash scripts/score-heldout.sh              # clones both (needs github.com)
#   bash scripts/score-heldout.sh DIR          # DIR holds both repositories' checkouts (or bare
#                                              # git directories), named as on GitHub
#   bash scripts/score-heldout.sh DIR --rules none   # more arguments go to score_classifier
#
# Writes the CSVs into target/heldout/ and prints score_classifier's tables. Not part of the
# test suite: CI has no access to GitHub, and these files are not ours to commit.
set -euo pipefail
src=${1:-}
# A relative DIR is the caller's.
[[ -n "$src" ]] && src=$(cd "$src" && pwd)
cd "$(dirname "$0")/.."

out=target/heldout
mkdir -p "$out"
if [[ -z "$src" ]]; then
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  git clone -q https://github.com/paul-rottger/exaggerated-safety "$src/exaggerated-safety"
  git clone -q https://github.com/openai/safety-rbr-code-and-data "$src/safety-rbr-code-and-data"
fi

# `git show` reads a checkout and a bare directory alike, at the pinned commit.
show() { git -C "$1" show "$2:$3"; }
xstest=$(ls -d "$src"/exaggerated-safety* | head -1)
rbr=$(ls -d "$src"/safety-rbr-code-and-data* | head -1)
for m in llama2orig mistralinstruct mistralguard; do
  show "$xstest" d7bb5bd "model_completions/xstest_v2_completions_$m.csv" > "$out/xstest_$m.csv"
done
for split in train test; do
  show "$rbr" 7f489fa "data/rbr_gold_data/$split.jsonl" > "$out/rbr_$split.jsonl"
done

python3 - "$out" <<'PY'
import csv, json, sys
out = sys.argv[1]
rows = []
for m in ["llama2orig", "mistralinstruct", "mistralguard"]:
    with open(f"{out}/xstest_{m}.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"model": m, "id": r["id"], "prompt": r["prompt"], "completion": r["completion"],
                         "final_label": r["final_label"]})
with open(f"{out}/unseen.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
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

for f in unseen rbr_test rbr_train; do
  echo "== $f"
  cargo run -q -p parallax-analysis --example score_classifier -- "$out/$f.csv" "${@:2}"
done
