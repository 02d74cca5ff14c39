-- A replica identity for job_event_batches.
--
-- Under a publication FOR ALL TABLES (a Supabase project whose `supabase_realtime` publishes
-- every table), PostgreSQL refuses every UPDATE and DELETE of a table without a replica
-- identity ("cannot delete from table ... because it does not have a replica identity and
-- publishes deletes"). job_event_batches had none, so the prune of finished runs failed on
-- every attempt. Batches never share an event id (each takes its own range of ids from the
-- sequence, under its run's lock), so (run_id, last_id) identifies a row: the index the
-- reads and the prune already use becomes unique and serves as the identity. Appends keep
-- maintaining exactly one index.
create unique index job_event_batches_run_last_key
  on public.job_event_batches (run_id, last_id);
drop index public.job_event_batches_run_idx;
alter index public.job_event_batches_run_last_key rename to job_event_batches_run_idx;
alter table public.job_event_batches replica identity using index job_event_batches_run_idx;
