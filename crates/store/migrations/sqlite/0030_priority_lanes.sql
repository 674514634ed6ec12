-- Priority lanes: 0 clinical (a chart closing now), 2 backfill (catching up history; 1 is the
-- inbound lane, which polls the EHR and queues nothing here). A visit's deliveries take its
-- lane; a claim takes the clinical lane's due rows before any backfill row.
ALTER TABLE visits ADD COLUMN lane BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN lane BIGINT NOT NULL DEFAULT 0;
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (tenant_id, status, lane, next_attempt_at, seq);
