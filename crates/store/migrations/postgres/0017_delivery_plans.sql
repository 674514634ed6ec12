-- How each delivery was planned for its EHR (written / transformed: how / fallback: which /
-- not deliverable: why), and what the EHR kept of it on read-back (JSON: fields sent, fields
-- kept, and the paths that differ — paths only, no values, so no PHI).
ALTER TABLE deliveries ADD COLUMN plan TEXT;
ALTER TABLE deliveries ADD COLUMN readback TEXT;
