-- A display name is bounded.
--
-- Clients may change their own `users.display_name` through Supabase's Data API (the one
-- column they write), and nothing bounded it: a name of hundreds of megabytes would come back
-- in every answer that carries the user. 200 characters is `drama_domain::MAX_DISPLAY_NAME`.
-- `not valid`: rows already stored are not checked (a legacy database may hold longer names,
-- and validating would fail the migration on cutover day); every write from now on is.
alter table public.users
  add constraint users_display_name_length
  check (char_length(display_name) <= 200) not valid;
