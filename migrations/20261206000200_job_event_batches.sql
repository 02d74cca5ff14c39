-- Job events stored as one row per run and transaction instead of one row per event.
--
-- A claim or completion batch of 500 tasks appended 500 to 1,000 rows (each with an index
-- entry); it now appends one row per run it touched, with the events as parallel arrays in the
-- order they happened. An event's id is `first_id + position` (position from 0), and
-- `first_id` is `nextval(job_event_batch_seq) * 2^20`, taken while the transaction holds the
-- run's lock: ids still grow in commit order within a run, and stay below 2^53 (safe for
-- JavaScript clients) for 8 billion batches. One transaction appends fewer than 2^20 events to
-- one run (a run holds at most 100,000 nodes).
--
-- `job_events` stays readable and writable as a view with the old columns, so a process of the
-- previous version that runs during a rolling deploy keeps working: its inserts become
-- one-event batches (through an INSTEAD OF trigger) with ids from the same sequence, and its
-- reads see every event. Existing events keep their ids; new ids start above them.

create sequence public.job_event_batch_seq;

create table public.job_event_batches (
  run_id uuid not null,
  first_id bigint not null,
  last_id bigint not null,
  at timestamptz not null default now(),
  job_ids uuid[] not null,
  keys text[] not null,
  kinds text[] not null,
  states text[] not null,
  attempts integer[] not null,
  -- `null` elements for events without details.
  details jsonb[] not null,
  constraint job_event_batches_ids check (last_id = first_id + cardinality(job_ids) - 1),
  constraint job_event_batches_shape check (
    cardinality(job_ids) between 1 and 1048576
    and cardinality(keys) = cardinality(job_ids)
    and cardinality(kinds) = cardinality(job_ids)
    and cardinality(states) = cardinality(job_ids)
    and cardinality(attempts) = cardinality(job_ids)
    and cardinality(details) = cardinality(job_ids))
);
-- events(run, after[, scope]): the batches of a run after an id, in order; prune.
create index job_event_batches_run_idx on public.job_event_batches (run_id, last_id);

-- Append-only and read by run: no updates, so pages fill completely; vacuum only after prunes.
alter table public.job_event_batches set (fillfactor = 100, autovacuum_vacuum_insert_scale_factor = 0.5);

insert into public.job_event_batches (run_id, first_id, last_id, at, job_ids, keys, kinds,
  states, attempts, details)
select run_id, id, id, at, array[job_id], array[key], array[kind], array[state], array[attempt],
  array[detail]
from public.job_events;

select setval('public.job_event_batch_seq',
  greatest(1, (select coalesce(max(id), 0) from public.job_events) / 1048576 + 1));

drop table public.job_events;

create view public.job_events with (security_invoker = true) as
select b.first_id + e.position - 1 as id, b.run_id, e.job_id, e.key, e.kind, e.state,
  e.attempt, e.detail, b.at
from public.job_event_batches b
cross join lateral unnest(b.job_ids, b.keys, b.kinds, b.states, b.attempts, b.details)
  with ordinality as e(job_id, key, kind, state, attempt, detail, position);

create function public.job_events_insert() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.id := nextval('public.job_event_batch_seq') * 1048576;
  new.at := coalesce(new.at, now());
  new.attempt := coalesce(new.attempt, 0);
  insert into public.job_event_batches (run_id, first_id, last_id, at, job_ids, keys, kinds,
    states, attempts, details)
  values (new.run_id, new.id, new.id, new.at, array[new.job_id], array[new.key],
    array[new.kind], array[new.state], array[new.attempt], array[new.detail]);
  return new;
end
$$;

create trigger job_events_insert instead of insert on public.job_events
  for each row execute function public.job_events_insert();

alter table public.job_event_batches enable row level security;
revoke all on public.job_event_batches, public.job_events from anon, authenticated;
grant select on public.job_event_batches, public.job_events to authenticated;
create policy job_event_batches_owner on public.job_event_batches
  for select to authenticated
  using (exists (select 1 from public.jobs j
                 where j.id = job_event_batches.run_id and j.owner_id = (select auth.uid())));
