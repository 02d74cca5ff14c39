-- Checks the existing ledger rows against the reason constraint added `not valid` by the
-- previous migration. VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE: credit movements go on
-- while the rows are read.

alter table public.credit_ledger validate constraint credit_ledger_reason_check;
