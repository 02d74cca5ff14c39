-- Settling a run no longer writes index entries.
--
-- `job_groups_settled_runs_idx` (on `finished_at`) served one reader, `prune`, and made the
-- update that settles a run or group a non-HOT one: `finished_at` goes from null to a time,
-- so the new row version needed an entry in every index of the table. A run of one task
-- settles once per job, so that was a third of the row writes of its completion. Prune now
-- walks the runs in id order (ids are UUIDv7, so that is creation order) through an index of
-- the run rows alone, and keeps those settled before its cutoff. The indexes left on
-- `job_groups` cover only columns that never change (`id`, `run_id`) or change only when a
-- refund becomes due, so every counter update of a claim or completion can stay on its page.
create index job_groups_runs_idx on public.job_groups (id) where id = run_id;
drop index public.job_groups_settled_runs_idx;
