-- The server is the only writer of what it trusts.
--
-- Clients that talk to Supabase directly (Data API, Realtime) as `authenticated` may read their
-- own rows and change their own display name; nothing else. Every other write goes through the
-- server, which checks it, bumps the drama's version, announces the change and keeps its cache
-- right. `anon` may do nothing at all. The server connects as the table owner and is not
-- affected by any of this.
--
-- Storage keys are checked by the database too: an asset's `storage_key` must lie under its
-- drama owner's prefix (`{owner}/…`), or, for objects of the old server that a legacy import
-- recorded, inside the drama's own folder of the old layout (`[{prefix}/]dramas/{drama}/…`).
-- Orphaned objects record whose they were, so the sweeper deletes only that owner's keys.

-- 1. Grants ----------------------------------------------------------------------------------

-- Start from nothing on every relation of `public` (tables, views, sequences), then grant back
-- exactly the reads below.
do $$
declare
  r record;
begin
  for r in
    select c.relname, c.relkind from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
  loop
    if r.relkind = 'S' then
      execute format('revoke all on sequence public.%I from anon, authenticated', r.relname);
    else
      execute format('revoke all on table public.%I from anon, authenticated', r.relname);
    end if;
  end loop;
end
$$;

-- Supabase grants everything on tables and functions created later in `public` to `anon` and
-- `authenticated` by default; tables of later migrations start with nothing instead and grant
-- what they mean to.
alter default privileges in schema public revoke all on tables from anon, authenticated;
alter default privileges in schema public revoke all on sequences from anon, authenticated;
alter default privileges in schema public revoke execute on functions from public, anon, authenticated;

-- Functions in `public` are callable through the Data API's RPC endpoint; none is meant for
-- clients (trigger functions need no EXECUTE to fire).
do $$
declare
  f record;
begin
  for f in
    select p.oid::regprocedure as sig from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public' and p.prokind = 'f'
  loop
    execute format('revoke execute on function %s from public, anon, authenticated', f.sig);
  end loop;
end
$$;

-- What a signed-in client may read: its own rows (the policies of the earlier migrations).
grant select on public.users, public.dramas, public.characters, public.episodes, public.scenes,
  public.assets, public.jobs, public.job_groups, public.job_edges, public.job_event_batches,
  public.job_events
  to authenticated;
grant select (id, owner_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at)
  on public.api_keys to authenticated;
-- The one thing a client may change directly: its own display name.
grant update (display_name) on public.users to authenticated;

-- The write policies of the earlier migrations cover nothing a client can do any more; keep
-- only reads, so a grant added by mistake later still meets no write policy.
drop policy dramas_owner on public.dramas;
drop policy characters_owner on public.characters;
drop policy episodes_owner on public.episodes;
drop policy scenes_owner on public.scenes;
drop policy assets_owner on public.assets;
create policy dramas_owner on public.dramas
  for select to authenticated
  using (owner_id = (select auth.uid()));
create policy characters_owner on public.characters
  for select to authenticated
  using (exists (select 1 from public.dramas d where d.id = drama_id and d.owner_id = (select auth.uid())));
create policy episodes_owner on public.episodes
  for select to authenticated
  using (exists (select 1 from public.dramas d where d.id = drama_id and d.owner_id = (select auth.uid())));
create policy scenes_owner on public.scenes
  for select to authenticated
  using (exists (select 1 from public.dramas d where d.id = drama_id and d.owner_id = (select auth.uid())));
create policy assets_owner on public.assets
  for select to authenticated
  using (exists (select 1 from public.dramas d where d.id = drama_id and d.owner_id = (select auth.uid())));

-- 2. Storage keys ----------------------------------------------------------------------------

-- Whether `storage_key` may be recorded for an asset of drama `drama_id` owned by `owner`.
-- The same rule as `drama_domain::storage_key_belongs` in the server:
-- - a key whose first segment has the shape of a user id must lie under `{owner}/` (the
--   layout of every key the server builds: `{user}/{scope}/{category}/{file}`);
-- - any other key is an object of the old server and must lie in the drama's own folder of
--   the old layout: `dramas/{drama}/…`, optionally below a prefix (`{prefix}/dramas/{drama}/…`);
-- - no key has an empty, `.` or `..` segment.
create function public.storage_key_belongs(storage_key text, owner uuid, drama_id text)
  returns boolean
  language sql immutable parallel safe
  set search_path = ''
  as $$
    select storage_key !~ '(^|/)\.{0,2}(/|$)'
      and case
        when split_part(storage_key, '/', 1)
             ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
          then starts_with(storage_key, owner::text || '/')
        else starts_with(storage_key, 'dramas/' || drama_id || '/')
          or strpos(storage_key, '/dramas/' || drama_id || '/') > 0
      end
  $$;
revoke execute on function public.storage_key_belongs(text, uuid, text)
  from public, anon, authenticated;

create function public.check_asset_storage_key() returns trigger
  language plpgsql
  set search_path = ''
  as $$
declare
  owner uuid;
begin
  if new.storage_key is null then
    return new;
  end if;
  select d.owner_id into owner from public.dramas d where d.id = new.drama_id;
  if owner is null or not public.storage_key_belongs(new.storage_key, owner, new.drama_id) then
    raise exception 'storage key % is not under the prefix of the owner of drama %',
        new.storage_key, new.drama_id
      using errcode = 'check_violation', constraint = 'assets_storage_key_owner';
  end if;
  return new;
end
$$;

create trigger assets_storage_key_owner
  before insert or update of storage_key, drama_id on public.assets
  for each row execute function public.check_asset_storage_key();

-- 3. Orphans record their owner --------------------------------------------------------------

alter table public.orphaned_objects add column owner_id uuid, add column drama_id text;

-- Recorded before this file: keys the server built name their owner and drama; objects of the
-- old server name their drama, whose owner the import bookkeeping knows (when exactly one).
update public.orphaned_objects o
set owner_id = split_part(o.storage_key, '/', 1)::uuid,
    drama_id = split_part(o.storage_key, '/', 2)
where split_part(o.storage_key, '/', 1)
      ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
update public.orphaned_objects o
set drama_id = l.drama_id, owner_id = l.owner_id
from (
  select drama_id, min(owner_id::text)::uuid as owner_id
  from public.legacy_imports group by drama_id having count(distinct owner_id) = 1
) l
where o.owner_id is null
  and public.storage_key_belongs(o.storage_key, l.owner_id, l.drama_id);

create or replace function public.record_orphaned_object() returns trigger
  language plpgsql
  set search_path = ''
  as $$
declare
  owner uuid;
begin
  -- Inside a drama's cascade the drama is already gone; `dramas_record_orphans` recorded its
  -- keys with their owner before the cascade started.
  select d.owner_id into owner from public.dramas d where d.id = old.drama_id;
  if tg_op = 'DELETE' then
    if old.storage_key is not null then
      insert into public.orphaned_objects (storage_key, owner_id, drama_id, reason)
      values (old.storage_key, owner, old.drama_id,
              'asset ' || old.drama_id || '/' || old.id || ' deleted')
      on conflict (storage_key) do nothing;
    end if;
    return old;
  end if;
  if old.storage_key is not null and old.storage_key is distinct from new.storage_key then
    insert into public.orphaned_objects (storage_key, owner_id, drama_id, reason)
    values (old.storage_key, owner, old.drama_id,
            'asset ' || old.drama_id || '/' || old.id || ' replaced')
    on conflict (storage_key) do nothing;
  end if;
  -- A key written again is in use, not orphaned.
  if new.storage_key is not null then
    delete from public.orphaned_objects where storage_key = new.storage_key;
  end if;
  return new;
end
$$;

create function public.record_drama_orphans() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  insert into public.orphaned_objects (storage_key, owner_id, drama_id, reason)
  select a.storage_key, old.owner_id, old.id, 'drama ' || old.id || ' deleted'
  from public.assets a
  where a.drama_id = old.id and a.storage_key is not null
  on conflict (storage_key) do nothing;
  return old;
end
$$;

create trigger dramas_record_orphans
  before delete on public.dramas
  for each row execute function public.record_drama_orphans();

revoke execute on function public.check_asset_storage_key(), public.record_orphaned_object(),
  public.record_drama_orphans() from public, anon, authenticated;

-- claim_orphans: a reference image named by a job's payload is in use while the job exists.
create index jobs_reference_key_idx on public.jobs ((payload ->> 'reference_key'))
  where payload ->> 'reference_key' is not null;
