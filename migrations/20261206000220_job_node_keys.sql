-- Node keys are unique within a run, enforced by the database again.
--
-- The unique `(run_id, key)` index on `jobs` was replaced by a plain `run_id` index because
-- every task transition writes a new version of the task row (its state moves it between
-- partial indexes, so the update is never HOT), and a unique index checks the key again for
-- every version: about a fifth more time per claim and completion of a task
-- (docs/benchmarks/jobs.md). A key never changes after the node is inserted, so uniqueness is
-- checked once, at insertion, in a table that is only ever inserted into and deleted from:
-- `job_node_keys`, whose primary key is `(run_id, key)`. A statement trigger on `jobs` enters
-- the keys of every statement's new nodes (engine writes, expansions, any other writer), so a
-- duplicate key fails the inserting statement with a unique violation; another trigger refuses
-- to change a node's run or key. Run roots (key '') are unique by their id and not entered.

create table public.job_node_keys (
  run_id uuid not null,
  key text not null,
  primary key (run_id, key)
);

-- Inserted once per node, deleted with its run (prune): no updates, so pages fill completely.
alter table public.job_node_keys set (fillfactor = 100, autovacuum_vacuum_insert_scale_factor = 0.2);

insert into public.job_node_keys (run_id, key)
select run_id, key from public.jobs where node_type <> 'run';

create function public.job_node_keys_insert() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  insert into public.job_node_keys (run_id, key)
  select n.run_id, n.key from new_nodes n where n.node_type <> 'run';
  return null;
end
$$;

create trigger job_node_keys_insert after insert on public.jobs
  referencing new table as new_nodes
  for each statement execute function public.job_node_keys_insert();

create function public.jobs_key_fixed() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'a job node''s run and key cannot change (node %)', old.id
    using errcode = 'check_violation';
end
$$;

-- Fires only for updates that name these columns; the engine's updates never do.
create trigger jobs_key_fixed before update of run_id, key on public.jobs
  for each row
  when (old.run_id is distinct from new.run_id or old.key is distinct from new.key)
  execute function public.jobs_key_fixed();

alter table public.job_node_keys enable row level security;
revoke all on public.job_node_keys from anon, authenticated;
