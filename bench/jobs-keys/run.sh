#!/usr/bin/env bash
# What enforcing node-key uniqueness costs the hot path: the claim and completion updates of
# 20,000 tasks of one run (updates.sql, in SQL on the server), on the schema as migrated (keys
# unique through job_node_keys, checked once at insertion) and on the same schema with a unique
# (run_id, key) index on jobs instead, interleaved. Prints wall and CPU microseconds per task
# (the CPU of the database backend that runs the updates, read from /proc: run it on the
# database's machine; on a shared machine the CPU time is the steadier number).
#
#   REPS=3 bench/jobs-keys/run.sh
#
# Creates the databases bench_keys_table and bench_keys_index on the server of DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/postgres); needs psql.
set -euo pipefail
cd "$(dirname "$0")/../.."
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
base="${url%/*}"
reps="${REPS:-3}"
q() { psql -qX -v ON_ERROR_STOP=1 "$@"; }
for db in bench_keys_table bench_keys_index; do
  q "$url" -c "drop database if exists $db" -c "create database $db"
  for f in migrations/*.sql; do q "$base/$db" -f "$f" >/dev/null 2>&1; done
done
q "$base/bench_keys_index" -c "drop trigger job_node_keys_insert on public.jobs" \
  -c "drop index public.jobs_run_idx" \
  -c "create unique index jobs_run_key on public.jobs (run_id, key)"
for rep in $(seq 1 "$reps"); do
  for db in bench_keys_table bench_keys_index; do
    q "$base/$db" -f bench/jobs-keys/updates.sql 2>&1 | awk -v db="$db" -v rep="$rep" -v hz="$(getconf CLK_TCK)" '
      /cpu ticks before:/ { before = $4 }
      /cpu ticks after:/ { after = $4 }
      /us per task:/ { wall = $NF }
      END { printf "%s rep %s: %s us wall, %.1f us CPU per task\n", db, rep, wall, (after - before) * 1e6 / hz / 20000 }'
  done
done
