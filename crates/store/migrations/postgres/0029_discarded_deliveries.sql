-- A dead letter an operator chooses not to send ends `discarded`, with the reason: terminal, and
-- no longer holding back its visit.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'in_flight', 'done', 'dead', 'withheld', 'discarded'));
