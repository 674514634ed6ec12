-- The visit's billing facts (procedure codes as entered, place of service, modifier, rendering
-- provider), JSON; the claim-readiness checklist reads them.
ALTER TABLE visits ADD COLUMN billing TEXT;
