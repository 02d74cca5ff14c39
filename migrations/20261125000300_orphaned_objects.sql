-- Objects in the asset store that no row refers to any more: the durable to-do list of the
-- cleanup sweeper. Every path that drops a storage key (a deleted drama, a removed asset, a
-- regenerated asset whose key changed) records it here in the same transaction, through a
-- trigger, so no object is ever lost track of.

create table public.orphaned_objects (
  storage_key text primary key,
  reason text not null,
  recorded_at timestamptz not null default now()
);
-- claim_orphans: oldest first.
create index orphaned_objects_recorded_idx on public.orphaned_objects (recorded_at, storage_key);

alter table public.orphaned_objects enable row level security;
revoke all on public.orphaned_objects from anon, authenticated;

create function public.record_orphaned_object() returns trigger
  language plpgsql
  as $$
begin
  if tg_op = 'DELETE' then
    if old.storage_key is not null then
      insert into public.orphaned_objects (storage_key, reason)
      values (old.storage_key, 'asset ' || old.drama_id || '/' || old.id || ' deleted')
      on conflict (storage_key) do nothing;
    end if;
    return old;
  end if;
  if old.storage_key is not null and old.storage_key is distinct from new.storage_key then
    insert into public.orphaned_objects (storage_key, reason)
    values (old.storage_key, 'asset ' || old.drama_id || '/' || old.id || ' replaced')
    on conflict (storage_key) do nothing;
  end if;
  -- A key written again is in use, not orphaned.
  if new.storage_key is not null then
    delete from public.orphaned_objects where storage_key = new.storage_key;
  end if;
  return new;
end
$$;

create trigger assets_record_orphans
  after update of storage_key or delete on public.assets
  for each row execute function public.record_orphaned_object();

-- The sweeper looks keys up by value.
create index assets_storage_key_idx on public.assets (storage_key) where storage_key is not null;
