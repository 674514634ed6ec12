-- Work that one instance of many must do alone (the audit checkpointer signs each tenant's next
-- checkpoint from the last one; two at once would witness overlapping ranges). The holder renews
-- its lease; when it dies the lease runs out and another instance takes over.
CREATE TABLE leader_leases (
    role       TEXT   PRIMARY KEY,
    owner      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
