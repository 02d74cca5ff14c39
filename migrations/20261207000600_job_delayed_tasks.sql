-- Claims no longer read the tasks whose `run_after` lies ahead.
--
-- A task waiting for its retry's backoff (or deferred by a retry-after) stays `ready` with
-- `run_after` in the future. The claim's pick reads the ready tasks of each (class, kind) pair
-- best first through `jobs_ready_class_idx` and filtered those out one by one, so every claim
-- of every worker read every deferred task that ranks above the first runnable one: after a
-- provider outage put 50,000 tasks into backoff, a pick cost about 95 ms.
--
-- `delayed` marks a ready task whose `run_after` was ahead when the engine wrote its row (the
-- write statement sets it from the state and `run_after` it writes); a claim first clears it
-- on the tasks that came due (`drama_postgres::jobs::claim::PROMOTE`), and the pick reads only
-- the tasks without it. It is a storage detail of the claim, not a state: `state` stays
-- `ready`, as the engine, the API, and clients reading `jobs` through the Data API or Realtime
-- know it. A new value of `state` would have shown those clients a state they do not know,
-- and processes of the previous version, which refuse a state they cannot parse, would have
-- failed to load any run holding such a task while they are rolled.
--
-- Processes of the previous version neither read nor write the column, and every mix stays
-- correct: a row they leave `delayed` while it is not ready is ignored (both indexes below
-- cover ready tasks only), one they requeue with the flag still set is cleared when it comes
-- due, and one they requeue into the future without it is read by the pick, which still
-- checks `run_after`, at the old cost.

alter table public.jobs add column delayed boolean not null default false;

update public.jobs set delayed = true
where node_type = 'task' and state = 'ready' and run_after > now();

-- claim: the runnable tasks of one (class, kind) pair, best first. The pick reads the entries
-- of the pair with `delayed = false` only, in order; the deferred ones sort apart and cost
-- nothing. Claims enumerate the pairs by walking the two leading columns, as before.
-- Processes of the previous version still find their ready tasks here (they sort a pair's
-- ready tasks instead of reading them in order until the roll is over). Built under another
-- name and renamed, so the name the documentation uses stays.
create index jobs_ready_class_delayed_idx
  on public.jobs (resource_class, kind, delayed, priority desc, rank desc, id)
  where state = 'ready';
drop index public.jobs_ready_class_idx;
alter index public.jobs_ready_class_delayed_idx rename to jobs_ready_class_idx;

-- claim (promotion): deferred tasks whose `run_after` passed, soonest first.
create index jobs_delayed_due_idx on public.jobs (run_after) where state = 'ready' and delayed;

-- Clients read every column of their own tasks but the checkpoint (20261206000700); this one
-- is no secret.
grant select (delayed) on public.jobs to authenticated;
