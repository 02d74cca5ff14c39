-- A task's checkpoint is the server's, not the client's.
--
-- A script task saves the model's output in `jobs.checkpoint` before it writes the drama, so
-- that a retried commit never pays for the call again. When the write then fails (the drama
-- was deleted meanwhile, its id was taken), the task fails and its cost goes back to the
-- user: a client that could read the checkpoint through the Data API would have the paid
-- output for free. Clients keep reading every other column of their own tasks; Realtime
-- leaves out columns the role may not select. A client's `select=*` on `jobs` must now name
-- its columns.

revoke select on public.jobs from authenticated;

do $$
declare
  readable text;
begin
  select string_agg(quote_ident(a.attname), ', ' order by a.attnum) into readable
  from pg_attribute a
  where a.attrelid = 'public.jobs'::regclass and a.attnum > 0 and not a.attisdropped
    and a.attname <> 'checkpoint';
  execute format('grant select (%s) on public.jobs to authenticated', readable);
end
$$;
