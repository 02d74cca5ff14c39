-- The active runs of an owner, found without reading the settled ones.
--
-- `list_runs(owner, active_only)` — the `active_runs` quota check on every paid submission
-- and resume — joined the owner's runs to `job_groups` on `finished_at is null`. No index
-- covers that column (`20261207000100_job_groups_hot_settle` dropped the last one so that the
-- counter updates of claims and completions stay HOT), so the planner scanned the whole of
-- `job_groups`, every group of every run of every owner, per check (45 ms at 200,000 rows).
-- An index whose key or predicate mentions `finished_at` (or `state`) would make the update
-- that settles a run non-HOT again, and `job_groups` has no owner to index by anyway.
--
-- Instead, the engine keeps one row here per unsettled run, in the same statement as the
-- transition that creates, settles or resumes the run (under the run's lock, so no two
-- transactions write the same row): an insert when a run is created unsettled or leaves a
-- settled state, a delete when it settles. The check reads the owner's rows through the
-- primary key and keeps those whose run is still unsettled in `job_groups`, which stays the
-- truth: a row left behind (a run settled by a process of the previous version during the
-- roll) is stepped over, never counted. Runs that a process of the previous version submits
-- during the roll have no row until they are resumed: the quota counts them only after it.
create table public.job_active_runs (
  owner_id uuid not null,
  run_id uuid not null,
  primary key (owner_id, run_id)
);

-- Inserted and deleted, never updated.
alter table public.job_active_runs set (fillfactor = 100);

insert into public.job_active_runs (owner_id, run_id)
select j.owner_id, j.id
from public.job_groups g
join public.jobs j on j.id = g.id
where g.id = g.run_id and g.finished_at is null;

-- The server's bookkeeping: clients read their runs from `jobs` and `job_groups`.
alter table public.job_active_runs enable row level security;
revoke all on public.job_active_runs from anon, authenticated;
