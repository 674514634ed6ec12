-- Disclosures: a visit shared with another organisation's EHR connection (a referral, the
-- patient's own primary care). The patient there is named by the recipient's id for them, sealed.
-- Each of the visit's disclosable artifacts gets a delivery to that connection; the worker decides
-- the patient's disclosure consent again before each one is sent.
CREATE TABLE disclosures (
    tenant_id         TEXT   NOT NULL,
    id                TEXT   NOT NULL,
    visit_id          TEXT   NOT NULL,
    connection_id     TEXT   NOT NULL,
    recipient_patient TEXT   NOT NULL,
    actor             TEXT   NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, visit_id, connection_id)
);

-- A delivery the patient's consent withholds ends `withheld`: never sent, not a dead letter.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'in_flight', 'done', 'dead', 'withheld'));
