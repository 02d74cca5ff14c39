#!/usr/bin/env bash
# drama-jobs against Graphile Worker and pg-boss on their batched settings, on the same
# PostgreSQL, interleaved: every repetition runs each system once (in a rotating order), so
# background load hits them alike. Prints a Markdown table with the ratios to Graphile Worker.
#
#   bench/jobs-compare/run.sh                 # REPS=2 JOBS=20000 NODES=10000
#   REPS=3 bench/jobs-compare/run.sh
#
# Installs graphile-worker and pg-boss (versions pinned in package-lock.json) with npm into
# $CARGO_TARGET_DIR/jobs-compare and builds jobs_bench in release mode. Every system drops and
# recreates its own database (bench_gw, bench_pgboss, bench_jobs) on the server of
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres). Needs Node.js 20 or newer.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drama-server/target}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REPS="${REPS:-2}"
JOBS="${JOBS:-20000}"
NODES="${NODES:-10000}"

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  echo "Node.js and npm are needed (Debian/Ubuntu: apt-get install -y nodejs npm)." >&2
  exit 1
}

dir="$CARGO_TARGET_DIR/jobs-compare"
mkdir -p "$dir"
cp bench/jobs-compare/package.json bench/jobs-compare/package-lock.json \
  bench/jobs-compare/queues.mjs bench/jobs-compare/summarize.mjs "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
cargo build --release -p drama-postgres --example jobs_bench
bench="$CARGO_TARGET_DIR/release/examples/jobs_bench"

out="${OUT:-$dir/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
systems=(gw pgboss runs one-run dag)
run_one() {
  case "$1" in
    gw) node "$dir/queues.mjs" gw --jobs "$JOBS" --concurrency 8 --local-queue 500 ;;
    pgboss) node "$dir/queues.mjs" pgboss --jobs "$JOBS" --batch-size 100 --local-concurrency 4 ;;
    runs | one-run) "$bench" throughput --jobs "$JOBS" --concurrency 8 --processes 1 --shape "$1" --reps 1 --json ;;
    dag) "$bench" dag --nodes "$NODES" --concurrency 32 --reps 1 --json ;;
  esac
}
for rep in $(seq 1 "$REPS"); do
  for i in "${!systems[@]}"; do
    system="${systems[$(((i + rep - 1) % ${#systems[@]}))]}"
    echo "rep $rep: $system" >&2
    run_one "$system" | grep '^{' >>"$out"
  done
done
echo "results: $out" >&2
node "$dir/summarize.mjs" "$out"
