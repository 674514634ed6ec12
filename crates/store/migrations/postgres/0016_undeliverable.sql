-- A dead letter for an artifact this EHR has no path for at all does not hold back the rest of
-- its visit (per-visit order): it will never succeed, whatever comes after it.
ALTER TABLE deliveries ADD COLUMN blocks_visit BIGINT NOT NULL DEFAULT 1;
