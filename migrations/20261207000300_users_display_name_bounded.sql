-- A display name is bounded.
--
-- Clients may change their own `users.display_name` through Supabase's Data API (the one
-- column they write), and nothing bounded it: a name of hundreds of megabytes would come back
-- in every answer that carries the user. 200 characters is `drama_domain::MAX_DISPLAY_NAME`.
--
-- Names already longer are cut first, and the constraint is then added valid: PostgreSQL
-- checks a constraint against every new version of a row, so a row left over the bound (as
-- `not valid` would leave it) could not be updated at all any more — its credits could not
-- move. A name is only shown; cutting it costs nothing else.
update public.users
  set display_name = left(display_name, 200)
  where char_length(display_name) > 200;

alter table public.users
  add constraint users_display_name_length
  check (char_length(display_name) <= 200);
