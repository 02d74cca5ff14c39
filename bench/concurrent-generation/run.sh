#!/usr/bin/env bash
# Concurrent generations, before and after a change, on the same machine in one run: DRAMAS
# dramas written at once and then generated at once by `serve --no-workers` and WORKERS
# `worker` processes on one PostgreSQL database (offline AI, assets on local disk shared by the
# processes). For each build it reports the media tasks, their attempts per task, the
# deadlocks the server detected (pg_stat_database), the task attempts that ended in a
# deadlock or serialization failure (40P01/40001 in the job events) and the
# offline provider's calls per media task (each worker logs its calls when it stops; both
# builds must have that log line, so BEFORE is at least the commit that added it), and how
# often a worker lost its registration (its handlers are cancelled and their tasks retaken).
#
#   bench/concurrent-generation/run.sh                       # BEFORE=80ba22d AFTER=HEAD, REPS=2
#   BEFORE=<rev> AFTER=<rev> REPS=3 DRAMAS=8 WORKERS=2 IMAGE_LIMIT=16 VIDEO_LIMIT=8 \
#     bench/concurrent-generation/run.sh
#
# Builds both revisions (debug: the numbers are counts, not timings) from detached worktrees
# into $CARGO_TARGET_DIR/concurrent-generation (or takes BEFORE_BIN / AFTER_BIN as built) and
# recreates the database bench_concurrent on the server of DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) for every run.
# Needs curl, jq and psql. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drama-server/target}"
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${url%/*}"
db_url="$base/bench_concurrent"
BEFORE="${BEFORE:-80ba22d}"
AFTER="${AFTER:-HEAD}"
REPS="${REPS:-2}"
DRAMAS="${DRAMAS:-8}"
WORKERS="${WORKERS:-2}"
PORT="${PORT:-18931}"
IMAGE_LIMIT="${IMAGE_LIMIT:-8}" # images and videos rendered at once across the workers
VIDEO_LIMIT="${VIDEO_LIMIT:-2}" # (the defaults of worker.image_limit and worker.video_limit)
dir="$CARGO_TARGET_DIR/concurrent-generation"
mkdir -p "$dir"

for tool in curl jq psql; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done

build() { # label rev; BEFORE_BIN / AFTER_BIN name a binary already built from that rev
  local given="${1^^}_BIN"
  if [ -n "${!given:-}" ]; then
    cp "${!given}" "$dir/drama-server-$1"
    echo "$1 = ${!given}" >&2
    return
  fi
  local tree="$dir/src-$1"
  git worktree remove --force "$tree" 2>/dev/null || true
  git worktree add --detach "$tree" "$2" >&2
  (cd "$tree" && cargo build --locked -q -p drama-server >&2)
  cp "$CARGO_TARGET_DIR/debug/drama-server" "$dir/drama-server-$1"
  git worktree remove --force "$tree"
  echo "$1 = $(git rev-parse --short "$2")" >&2
}
build before "$BEFORE"
build after "$AFTER"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

run_one() { # label rep
  local bin="$dir/drama-server-$1" logs="$dir/logs-$1-$2" assets="$dir/assets-$1-$2"
  rm -rf "$logs" "$assets" && mkdir -p "$logs" "$assets"
  psql -qX "$url" -c "drop database if exists bench_concurrent" -c "create database bench_concurrent"
  local env=(env -i PATH="$PATH" DATABASE_URL="$db_url" AI_OFFLINE=true ASSETS_BACKEND=local
    ASSETS_DIR="$assets" ASSETS_SIGNING_SECRET=bench-secret-bench-secret-bench-secret
    HOST=127.0.0.1 PORT="$PORT" LOG_FORMAT=json RUST_LOG=warn,drama_server=info
    DRAMA__WORKER__IMAGE_LIMIT="$IMAGE_LIMIT" DRAMA__WORKER__VIDEO_LIMIT="$VIDEO_LIMIT")
  "${env[@]}" "$bin" migrate >/dev/null
  local key
  key=$("${env[@]}" "$bin" keys create --name bench | tail -n 1 | tr -d '[:space:]')
  # Builds with the credit ledger refuse a balance written around it; older ones have no ledger.
  psql -qX "$db_url" -c "do \$\$ begin
    if to_regproc('public.move_credits') is not null then
      perform public.move_credits(id, 100000000 - tokens, 'grant', null, null, 'benchmark')
        from public.users;
    else
      update public.users set tokens = 100000000;
    end if;
  end \$\$"
  "${env[@]}" "$bin" serve --no-workers >"$logs/serve.log" 2>&1 &
  local serve=$!
  pids=("$serve")
  local workers=()
  for w in $(seq 1 "$WORKERS"); do
    "${env[@]}" "$bin" worker >"$logs/worker-$w.log" 2>&1 &
    workers+=("$!")
    pids+=("$!")
  done
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
  local api="http://127.0.0.1:$PORT" jobs=()
  post() { curl -sf -X POST "$api$1" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' ${2:+-d "$2"}; }
  settle() {
    for job in "$@"; do
      until curl -sf "$api/jobs/$job" -H "Authorization: Bearer $key" \
        | jq -e '.status | IN("completed", "failed", "cancelled")' >/dev/null; do sleep 0.5; done
    done
  }
  # All at once: the requests go out in parallel.
  for i in $(seq 1 "$DRAMAS"); do
    post /dramas "{\"premise\": \"Bakery $i shares one oven with a rival, in 2 episodes.\", \"id\": \"oven-$i\"}" >"$logs/create-$i.json" &
  done
  wait_posts() { for i in $(seq 1 "$DRAMAS"); do until [ -s "$logs/$1-$i.json" ]; do sleep 0.1; done; done; }
  wait_posts create
  mapfile -t jobs < <(for i in $(seq 1 "$DRAMAS"); do jq -r .jobId "$logs/create-$i.json"; done)
  settle "${jobs[@]}"
  for i in $(seq 1 "$DRAMAS"); do post "/dramas/oven-$i/generate" >"$logs/generate-$i.json" & done
  wait_posts generate
  mapfile -t jobs < <(for i in $(seq 1 "$DRAMAS"); do jq -r .jobId "$logs/generate-$i.json"; done)
  settle "${jobs[@]}"
  for w in "${workers[@]}"; do kill -TERM "$w"; done
  for w in "${workers[@]}"; do wait "$w" || true; done
  kill -TERM "$serve"; wait "$serve" || true
  pids=()
  sleep 2 # the stopped backends' statistics (deadlocks) reach pg_stat_database
  local calls lost
  lost=$(cat "$logs"/worker-*.log | grep -c 'worker registration lost' || true)
  calls=$(cat "$logs"/worker-*.log | jq -R 'fromjson? | (.fields // .)
      | select(.message == "offline provider calls of this process")
      | (."offline_calls.images" // 0) + (."offline_calls.videos" // 0)' | jq -s add)
  psql -qXAt -F ' ' "$db_url" -c "
    select '$1', $2,
      (select count(*) from public.jobs where node_type = 'task'
         and kind in ('portrait', 'audition', 'storyboard', 'clip', 'cover')),
      (select sum(attempts) from public.jobs where node_type = 'task'
         and kind in ('portrait', 'audition', 'storyboard', 'clip', 'cover')),
      (select count(*) from public.job_events where detail::text like '%40P01%'),
      (select count(*) from public.job_events where detail::text like '%40001%'),
      (select count(*) from public.jobs where node_type = 'task' and state <> 'completed'),
      ${calls:-0},
      (select deadlocks from pg_stat_database where datname = current_database()),
      ${lost:-0}"
}

results="$dir/results-$(date -u +%Y%m%dT%H%M%SZ).txt"
for rep in $(seq 1 "$REPS"); do
  for label in before after; do
    echo "rep $rep: $label" >&2
    run_one "$label" "$rep" | tee -a "$results" >&2
  done
done
echo "results: $results" >&2
awk -v dramas="$DRAMAS" -v workers="$WORKERS" -v il="$IMAGE_LIMIT" -v vl="$VIDEO_LIMIT" '
  { n[$1]++; tasks[$1] += $3; attempts[$1] += $4; dl[$1] += $5; ser[$1] += $6; unfinished[$1] += $7; calls[$1] += $8; deadlocks[$1] += $9; lost[$1] += $10 }
  END {
    printf "%d dramas at once, %d workers, limits image %d / video %d, %d runs per build\n\n", dramas, workers, il, vl, n["after"]
    print "| build | media tasks | attempts per media task | deadlocks (server) | 40P01 in job events | 40001 in job events | tasks not completed | worker registrations lost | provider calls per media task |"
    print "|---|---|---|---|---|---|---|---|---|"
    for (b in n) printf "| %s | %d | %.3f | %d | %d | %d | %d | %d | %.3f |\n", b, tasks[b], attempts[b] / tasks[b], deadlocks[b], dl[b], ser[b], unfinished[b], lost[b], calls[b] / tasks[b]
  }' "$results"
