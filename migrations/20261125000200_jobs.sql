-- The job engine (drama-jobs, stored by drama_postgres::jobs).
--
-- One row per node in `jobs`: the run's root (node_type 'run', id = run_id), groups and tasks.
-- Tasks carry their state, lease and fence (`epoch`); runs and groups carry counters and cost
-- sums of their descendant tasks in `job_groups`, updated in the same transaction as every task
-- transition. `job_edges` holds dependencies, `job_events` the append-only event log.
--
-- Concurrency: every transaction that changes a run first locks the run's `job_groups` row, so
-- changes to one run are serialised and its events commit in id order. Claims pick runs with
-- `for no key update skip locked`. Nothing references other tables: the engine is generic, and
-- `owner_id` / `subject` are filter columns the application interprets.

create table public.jobs (
  id uuid primary key,
  run_id uuid not null,
  parent_id uuid,
  -- Enclosing groups, the run first, the parent last (empty for the root).
  ancestors uuid[] not null default '{}',
  node_type text not null check (node_type in ('run', 'group', 'task')),
  key text not null check (length(key) <= 200),
  kind text not null check (kind <> '' and length(kind) <= 200),
  owner_id uuid not null,
  subject text,
  idempotency_key text,
  payload jsonb not null default 'null',
  state text check (state in ('waiting', 'ready', 'running', 'completed', 'failed', 'skipped', 'cancelled')),
  priority integer not null default 0,
  -- Longest remaining path below the task in milliseconds of duration hints: among equal
  -- priorities, tasks on the critical path start first.
  rank bigint not null default 0,
  resource_class text not null default 'default',
  max_attempts integer not null default 1 check (max_attempts between 1 and 100),
  attempts integer not null default 0 check (attempts >= 0),
  -- Incremented by every claim; completions, failures and checkpoints must carry it.
  epoch bigint not null default 0,
  cost bigint not null default 0 check (cost >= 0),
  charged boolean not null default false,
  deps_remaining integer not null default 0 check (deps_remaining >= 0),
  run_after timestamptz not null default now(),
  lease_owner uuid,
  cancel_requested boolean not null default false,
  result jsonb,
  error text,
  checkpoint jsonb,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  -- Node keys are unique within a run; also serves loading a whole run (`where run_id = $1`)
  -- and children(parent), which scans the parent's run (no index on parent_id: every task
  -- transition would have to maintain it).
  constraint jobs_run_key unique (run_id, key),
  constraint jobs_state_only_on_tasks check ((node_type = 'task') = (state is not null)),
  constraint jobs_parent_unless_root check ((node_type = 'run') = (parent_id is null)),
  constraint jobs_root_id check (node_type <> 'run' or id = run_id),
  constraint jobs_idempotency_on_root check (idempotency_key is null or node_type = 'run'),
  constraint jobs_lease_while_running check (state is distinct from 'running' or lease_owner is not null)
);

-- claim: which runs have runnable tasks, best first.
create index jobs_ready_idx on public.jobs (priority desc, rank desc, id) where state = 'ready';
-- claim: runnable tasks of the locked runs, best first.
create index jobs_ready_run_idx on public.jobs (run_id, priority desc, rank desc, id)
  where state = 'ready';
-- heartbeat (cancellations of a worker's tasks), reap_expired (tasks of dead workers),
-- claim (running tasks per limited resource class).
create index jobs_running_idx on public.jobs (lease_owner, resource_class) where state = 'running';
-- submit: an owner's idempotency key names one run.
create unique index jobs_idempotency_key on public.jobs (owner_id, idempotency_key)
  where idempotency_key is not null;
-- list_runs(subject[, owner]): runs of a subject, newest first.
create index jobs_runs_by_subject_idx on public.jobs (subject, id desc) where node_type = 'run';
-- list_runs(owner): an owner's runs, newest first.
create index jobs_runs_by_owner_idx on public.jobs (owner_id, id desc) where node_type = 'run';

create table public.job_groups (
  -- The run's root or a group: `jobs.id`.
  id uuid primary key,
  run_id uuid not null,
  -- Derived from the counters: waiting, running, completed, failed or cancelled.
  state text not null check (state in ('waiting', 'running', 'completed', 'failed', 'cancelled')),
  total integer not null default 0 check (total >= 0),
  pending integer not null default 0 check (pending >= 0),
  running integer not null default 0 check (running >= 0),
  completed integer not null default 0 check (completed >= 0),
  failed integer not null default 0 check (failed >= 0),
  skipped integer not null default 0 check (skipped >= 0),
  cancelled integer not null default 0 check (cancelled >= 0),
  cost_total bigint not null default 0 check (cost_total >= 0),
  cost_charged bigint not null default 0 check (cost_charged >= 0),
  cost_refundable bigint not null default 0 check (cost_refundable >= 0),
  cost_refunded bigint not null default 0,
  budget bigint check (budget >= 0),
  cancel_requested boolean not null default false,
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint job_groups_counts_add_up
    check (total = pending + running + completed + failed + skipped + cancelled)
);
-- Loading a run's groups (whole-run operations, cancel, resume, expansion).
create index job_groups_run_idx on public.job_groups (run_id);
-- prune: runs that settled before a cutoff, oldest first.
create index job_groups_settled_runs_idx on public.job_groups (finished_at)
  where id = run_id and finished_at is not null;

create table public.job_edges (
  -- The dependent task.
  job_id uuid not null,
  -- The task it waits for.
  depends_on_id uuid not null,
  -- Also serves "prerequisites of a task" (dependency results at claim, queries).
  primary key (job_id, depends_on_id),
  check (job_id <> depends_on_id)
);
-- Completion and failure propagation: the dependents of a task.
create index job_edges_dependents_idx on public.job_edges (depends_on_id, job_id);

-- Append-only; read by run. No primary-key index: ids come from the identity sequence and
-- every lookup goes through (run_id, id).
create table public.job_events (
  id bigint generated always as identity,
  run_id uuid not null,
  job_id uuid not null,
  key text not null,
  kind text not null,
  state text not null,
  attempt integer not null default 0,
  detail jsonb,
  at timestamptz not null default now()
);
-- events(run, after[, scope]): SSE replay; prune.
create index job_events_run_idx on public.job_events (run_id, id);

create table public.job_workers (
  id uuid primary key,
  name text not null,
  kinds text[] not null default '{}',
  started_at timestamptz not null default now(),
  heartbeat_at timestamptz not null default now(),
  -- A worker whose registration expired is dead: its tasks are requeued.
  expires_at timestamptz not null
);
-- reap_expired: registrations that expired.
create index job_workers_expires_idx on public.job_workers (expires_at);

create table public.job_resource_classes (
  name text primary key,
  max_running integer check (max_running >= 0),
  per_minute integer check (per_minute > 0),
  -- Token bucket for `per_minute` (holds at most a minute's worth).
  tokens double precision not null default 0,
  refilled_at timestamptz,
  throttled_until timestamptz,
  updated_at timestamptz not null default now()
);

-- Row Level Security: a client talking to Supabase directly reads only its own runs; nobody
-- but the server (the table owner, which bypasses RLS) writes.
alter table public.jobs enable row level security;
alter table public.job_groups enable row level security;
alter table public.job_edges enable row level security;
alter table public.job_events enable row level security;
alter table public.job_workers enable row level security;
alter table public.job_resource_classes enable row level security;

revoke all on public.jobs, public.job_groups, public.job_edges, public.job_events,
  public.job_workers, public.job_resource_classes from anon, authenticated;
grant select on public.jobs, public.job_groups, public.job_edges, public.job_events
  to authenticated;

create policy jobs_owner on public.jobs
  for select to authenticated
  using (owner_id = (select auth.uid()));
create policy job_groups_owner on public.job_groups
  for select to authenticated
  using (exists (select 1 from public.jobs j where j.id = job_groups.id and j.owner_id = (select auth.uid())));
create policy job_edges_owner on public.job_edges
  for select to authenticated
  using (exists (select 1 from public.jobs j where j.id = job_edges.job_id and j.owner_id = (select auth.uid())));
create policy job_events_owner on public.job_events
  for select to authenticated
  using (exists (select 1 from public.jobs j where j.id = job_events.run_id and j.owner_id = (select auth.uid())));

-- Realtime clients may follow job progress (states in jobs, counters in job_groups).
do $$
declare
  t text;
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    foreach t in array array['jobs', 'job_groups'] loop
      if not exists (
        select 1 from pg_publication_tables
        where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = t
      ) then
        execute format('alter publication supabase_realtime add table public.%I', t);
      end if;
    end loop;
  end if;
end
$$;
