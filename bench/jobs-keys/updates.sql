-- One run of 20,000 ready tasks, then claims and completions in batches of 500 as the engine
-- writes them (ready -> running -> completed, two new versions of each task row), timed on the
-- server. Prints the wall time per task and the CPU time of the session's backend (from /proc,
-- so psql must run on the database's machine) before and after, in clock ticks.
\set run '00000000-0000-0000-0000-000000000001'
truncate public.jobs, public.job_node_keys;
insert into public.jobs (id, run_id, node_type, key, kind, owner_id)
  values (:'run', :'run', 'run', '', 'r', gen_random_uuid());
insert into public.jobs (id, run_id, parent_id, ancestors, node_type, key, kind, owner_id, state)
  select gen_random_uuid(), :'run', :'run', array[:'run'::uuid], 'task', 't' || i, 'k',
    gen_random_uuid(), 'ready'
  from generate_series(1, 20000) i;
vacuum analyze public.jobs;
checkpoint;
select pg_backend_pid() as pid \gset
\setenv BACKEND_PID :pid
\! awk '{print "cpu ticks before:", $14 + $15}' /proc/$BACKEND_PID/stat
do $$
declare
  t0 timestamptz := clock_timestamp();
  ids uuid[];
  w uuid := gen_random_uuid();
begin
  loop
    select array_agg(id) into ids from (
      select id from public.jobs where state = 'ready'
      order by resource_class, kind, priority desc, rank desc, id limit 500) s;
    exit when ids is null;
    update public.jobs j set state = 'running', epoch = epoch + 1, attempts = attempts + 1,
      lease_owner = w, started_at = now(), updated_at = now()
    from unnest(ids) u(id) where j.id = u.id;
    update public.jobs j set state = 'completed', lease_owner = null, finished_at = now(),
      result = '{}'::jsonb, updated_at = now()
    from unnest(ids) u(id) where j.id = u.id;
  end loop;
  raise notice 'us per task: %', round(extract(epoch from clock_timestamp() - t0) * 1e6 / 20000, 1);
end $$;
\! awk '{print "cpu ticks after:", $14 + $15}' /proc/$BACKEND_PID/stat
