-- The FHIR user (e.g. Practitioner/123) the identity provider names for a person, so a SMART
-- launch from the EHR finds the same Telechart user.
ALTER TABLE users ADD COLUMN fhir_user TEXT;
