-- Objects of the old bucket that an imported drama refers to by URL only.
--
-- The old server let a drama hold the URL of an object in another drama's folder (a copied
-- drama keeps its original's storyboards). The import gives an object a storage record only
-- in its own drama's folder, so such a drama keeps the URL as text, and when the drama whose
-- folder holds the object was deleted, the sweeper deleted the object under the other one.
-- The import records each such reference here; the sweeper leaves a key alone while a row
-- names it, and deletes it once the last drama that referred to it is gone (the rows go with
-- their drama).
create table public.legacy_object_references (
  drama_id text not null references public.dramas (id) on delete cascade,
  storage_key text not null check (storage_key <> ''),
  primary key (drama_id, storage_key)
);
-- claim_orphans: is a key still referred to?
create index legacy_object_references_key_idx on public.legacy_object_references (storage_key);

alter table public.legacy_object_references enable row level security;
revoke all on public.legacy_object_references from anon, authenticated;
