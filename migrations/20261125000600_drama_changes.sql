-- Every committed change of a drama's version (and every deletion) is announced on the
-- `drama_changes` channel, so API processes can tell their subscribers which drama changed,
-- whichever process wrote it. The payload names the drama, its owner and the new version;
-- subscribers read the drama itself. NOTIFY is delivered at commit, in commit order, and not
-- at all for a rolled-back transaction.

create function public.announce_drama_change() returns trigger
  language plpgsql
  as $$
begin
  if tg_op = 'DELETE' then
    perform pg_notify('drama_changes', json_build_object(
      'drama_id', old.id, 'owner', old.owner_id, 'version', old.version, 'deleted', true)::text);
    return old;
  end if;
  -- Every write of a drama or of its parts bumps the version; anything else is not a change
  -- a client can see.
  if tg_op = 'UPDATE' and new.version = old.version then
    return new;
  end if;
  perform pg_notify('drama_changes', json_build_object(
    'drama_id', new.id, 'owner', new.owner_id, 'version', new.version, 'deleted', false)::text);
  return new;
end;
$$;

create trigger dramas_announce_change
  after insert or update or delete on public.dramas
  for each row execute function public.announce_drama_change();
