-- A task's deferrals in a row.
--
-- A handler's `retry_after` / `throttle` (a provider's 429 with Retry-After) puts its task off
-- without using an attempt. A provider that answered so forever (Retry-After: 0 is enough) kept
-- the task, and its run, unsettled forever: no refund, and the owner's active-run slot held.
-- The engine now counts a task's deferrals in a row here; past
-- `drama_jobs::core::FREE_DEFERRALS` each deferral uses an attempt, so `max_attempts` ends it.
-- A retry or a resume sets it back to 0.
--
-- Processes of the previous version neither read nor write it: a task they defer keeps its
-- count, which only lets it be deferred freely for longer.

alter table public.jobs add column deferrals integer not null default 0;

-- Clients read every column of their own tasks but the checkpoint (20261206000700).
grant select (deferrals) on public.jobs to authenticated;
