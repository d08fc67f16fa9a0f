#!/usr/bin/env bash
# parallax benchmark: see bench/README.md.
#   bash bench/run.sh                 # build (release), then measure; ~2-3 minutes
#   BENCH_SKIP_BUILD=1 bash bench/run.sh --repeat 1
# Extra arguments go to bench/bench.py (`python3 bench/bench.py --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
  cargo build --release -p parallax -p parallax-stub
fi
if ! command -v wrk >/dev/null; then
  echo "bench: wrk is required to measure the stub's capacity (Debian: apt-get install -y wrk)" >&2
  exit 2
fi
if [[ ! -x /usr/bin/time ]]; then
  echo "bench: note: /usr/bin/time missing (Debian: apt-get install -y time); peak RSS comes from polling VmHWM" >&2
fi
exec python3 bench/bench.py --bin-dir target/release "$@"
