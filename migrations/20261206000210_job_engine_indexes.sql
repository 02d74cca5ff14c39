-- The job engine's hot path: indexes that keep a claim's cost independent of how many tasks
-- wait in full resource classes, and storage settings that let counter updates stay on their
-- page.

-- claim: the ready tasks of one (class, kind) pair, best first. Claims enumerate the distinct
-- pairs by walking this index (a loose index scan) and read only the pairs whose class has
-- room, so tasks waiting for a full class cost nothing. Replaces jobs_ready_idx, which led with
-- the priority and made every claim step over the waiting tasks of full classes.
create index jobs_ready_class_idx on public.jobs (resource_class, kind, priority desc, rank desc, id)
  where state = 'ready';
drop index public.jobs_ready_idx;
-- Claims now read the picked tasks of the runs they locked by id; nothing reads the ready
-- tasks of a run in order any more.
drop index public.jobs_ready_run_idx;

-- claim (running tasks per limited class), heartbeat (cancellations of a worker's tasks),
-- reap_expired (tasks of dead workers): leading with the class, so counting a class's running
-- tasks reads only that class.
create index jobs_running_class_idx on public.jobs (resource_class, lease_owner)
  where state = 'running';
drop index public.jobs_running_idx;

-- The run and group rows are updated by every claim and completion of their runs. With room
-- left on each page the updates that change no indexed column (all but the one that settles
-- the group) are HOT: no new index entries, and old versions pruned in place.
alter table public.job_groups set (fillfactor = 50);

-- Every claim and completion writes a new version of its task rows, and each version is
-- entered in every index of `jobs`; a unique index also looks the key up again. Keys are
-- unique within a run by construction (graphs are validated before anything is written, and
-- an expansion is checked against its whole run under the run's lock), so the run index need
-- not enforce it. It still serves loading a whole run and a group's children.
create index jobs_run_idx on public.jobs (run_id);
alter table public.jobs drop constraint jobs_run_key;

-- Task rows are updated twice per attempt and their state moves them between partial
-- indexes; vacuum them sooner than the default 20 % of the table, so dead versions do not
-- pile up in a table of millions of rows.
alter table public.jobs set (autovacuum_vacuum_scale_factor = 0.05,
  autovacuum_vacuum_insert_scale_factor = 0.05);
alter table public.job_groups set (autovacuum_vacuum_scale_factor = 0.05);
