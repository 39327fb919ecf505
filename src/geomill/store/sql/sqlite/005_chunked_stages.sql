-- Large stages are inserted in chunks, each committed on its own, so the first tasks run while the rest are still
-- being written. While a stage is not sealed, its counter holds one extra unit (the plan's own "token"): the
-- counter cannot reach zero before the last chunk is in, and sealing counts the token down like a finished task,
-- so exactly one transaction (a completion or the seal) sees zero and emits stage_complete. `total` is the number
-- of tasks inserted so far; a resumed plan skips that many and continues (plans are deterministic).
ALTER TABLE stages ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT TRUE;
