//! Seeding: Synthea transaction Bundles (patients with their history) plus telehealth
//! Appointments for today, half of them with a planned Encounter already on file.

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::SandboxError;
use crate::db::Db;

/// A practitioner the sandbox adds so telehealth appointments have a clinician.
pub const CLINICIANS: &[(&str, &str, &str)] = &[("sandbox-dr-1", "Rivera", "Ana"), ("sandbox-dr-2", "Okafor", "Chidi")];

/// Loads every `*.json` transaction Bundle in `dir`: each entry keeps the uuid of its fullUrl as
/// its id and `urn:uuid:` references are rewritten to `Type/id`.
/// `patient_id(synthea uuid, n)` names the n-th patient (an EHR's own id scheme).
pub fn load_synthea(
    db: &mut Db,
    dir: &Path,
    stamp: &str,
    patient_id: &dyn Fn(&str, usize) -> String,
) -> Result<usize, SandboxError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| SandboxError::Seed(format!("{}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut loaded = 0;
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| SandboxError::Seed(format!("{}: {e}", path.display())))?;
        let bundle: Value =
            serde_json::from_str(&text).map_err(|e| SandboxError::Seed(format!("{}: {e}", path.display())))?;
        let Some(entries) = bundle["entry"].as_array() else { continue };
        let mut ids = std::collections::HashMap::new();
        for entry in entries {
            if let (Some(full_url), Some(rtype)) =
                (entry["fullUrl"].as_str(), entry["resource"]["resourceType"].as_str())
            {
                let mut id = full_url.trim_start_matches("urn:uuid:").to_owned();
                if rtype == "Patient" {
                    id = patient_id(&id, db.all("Patient").count() + 1);
                }
                ids.insert(full_url.to_owned(), format!("{rtype}/{id}"));
            }
        }
        for entry in entries {
            let (Some(full_url), Some(resource)) = (entry["fullUrl"].as_str(), entry.get("resource")) else { continue };
            let mut resource = resource.clone();
            rewrite_urn_references(&mut resource, &ids);
            let id = ids.get(full_url).and_then(|r| r.split_once('/')).map(|(_, id)| id.to_owned());
            resource["id"] = Value::String(id.unwrap_or_else(|| full_url.trim_start_matches("urn:uuid:").to_owned()));
            db.write(resource, 1, stamp)?;
            loaded += 1;
        }
    }
    Ok(loaded)
}

fn rewrite_urn_references(node: &mut Value, ids: &std::collections::HashMap<String, String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(s) if key == "reference" => {
                        if let Some(target) = ids.get(s.as_str()) {
                            *s = target.clone();
                        }
                    }
                    other => rewrite_urn_references(other, ids),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_urn_references(i, ids)),
        _ => {}
    }
}

/// Adds minimal patients when no Synthea data is available, so the sandbox always has someone
/// to see.
pub fn generate_patients(db: &mut Db, count: usize, stamp: &str) -> Result<(), SandboxError> {
    const NAMES: &[(&str, &str, &str, &str)] = &[
        ("Jordan", "Reyes", "female", "1984-03-12"),
        ("Sam", "Whitfield", "male", "1957-07-30"),
        ("Priya", "Natarajan", "female", "1992-11-02"),
        ("Tomasz", "Kowalski", "male", "1948-01-19"),
    ];
    for (i, (given, family, gender, birth)) in NAMES.iter().cycle().take(count).enumerate() {
        let patient = json!({
            "resourceType": "Patient", "id": format!("sandbox-patient-{}", i + 1),
            "identifier": [{"system": "urn:telechart:sandbox:mrn", "value": format!("MRN{:05}", i + 1)}],
            "name": [{"family": family, "given": [given]}], "gender": gender, "birthDate": birth
        });
        db.write(patient, 1, stamp)?;
    }
    Ok(())
}

/// Telehealth Appointments for `today`, `per_patient` for each patient, every 20 minutes from
/// 08:00 UTC. R4 Appointment has no class: virtual is said by serviceType and appointmentType.
/// Every other appointment already has a planned Encounter, as EHRs that pre-create them do.
/// `encounter_id(appointment id, n)` names the EHR's own Encounter of the n-th one it holds.
pub fn generate_appointments(
    db: &mut Db,
    today: NaiveDate,
    per_patient: usize,
    stamp: &str,
    encounter_id: &dyn Fn(&str, usize) -> String,
) -> Result<usize, SandboxError> {
    for (id, family, given) in CLINICIANS {
        if !db.exists("Practitioner", id) {
            let practitioner = json!({
                "resourceType": "Practitioner", "id": id, "active": true,
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("99999{:05}", id.len() * 7)}],
                "name": [{"family": family, "given": [given], "prefix": ["Dr."]}]
            });
            db.write(practitioner, 1, stamp)?;
        }
    }
    // The living only: a deceased patient is not booked for a video visit.
    let patients: Vec<String> = db
        .all("Patient")
        .filter(|p| p.get("deceasedDateTime").is_none() && p.get("deceasedBoolean") != Some(&Value::Bool(true)))
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    let start_of_day: DateTime<Utc> = today.and_hms_opt(8, 0, 0).map(|t| t.and_utc()).unwrap_or_default();
    let mut made = 0;
    for round in 0..per_patient {
        for (p, patient) in patients.iter().enumerate() {
            let slot = round * patients.len() + p;
            let start = start_of_day + Duration::minutes(20 * i64::try_from(slot).unwrap_or(0));
            let end = start + Duration::minutes(20);
            let (clinician, _, _) = CLINICIANS[slot % CLINICIANS.len()];
            let appointment_id = format!("tele-{}-{:03}", today.format("%Y%m%d"), slot + 1);
            let appointment = json!({
                "resourceType": "Appointment", "id": appointment_id, "status": "booked",
                "serviceCategory": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-category", "code": "17", "display": "General Practice"}]}],
                "serviceType": [{"coding": [{"system": "http://snomed.info/sct", "code": "448337001", "display": "Telemedicine consultation with patient"}], "text": "Telehealth visit"}],
                "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "FOLLOWUP", "display": "A follow up visit from a previous appointment"}], "text": "Virtual follow-up"},
                "description": "Telehealth follow-up",
                "start": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "end": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "minutesDuration": 20,
                "participant": [
                    {"actor": {"reference": format!("Patient/{patient}")}, "required": "required", "status": "accepted"},
                    {"actor": {"reference": format!("Practitioner/{clinician}")}, "required": "required", "status": "accepted"}
                ]
            });
            db.write(appointment, 1, stamp)?;
            if slot % 2 == 1 {
                let encounter = json!({
                    "resourceType": "Encounter", "id": encounter_id(&appointment_id, db.all("Encounter").count() + 1), "status": "planned",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR", "display": "virtual"},
                    "subject": {"reference": format!("Patient/{patient}")},
                    "participant": [{"individual": {"reference": format!("Practitioner/{clinician}")}}],
                    "appointment": [{"reference": format!("Appointment/{appointment_id}")}]
                });
                db.write(encounter, 1, stamp)?;
            }
            made += 1;
        }
    }
    Ok(made)
}

/// An Encounter (planned) for every booked appointment that has none: what an EHR that opens its
/// own encounters (Epic-like) holds before any app arrives.
/// The EHR's own Encounter for each booked appointment; `id_for(appointment id, n)` names it.
pub fn generate_encounters(
    db: &mut Db,
    stamp: &str,
    id_for: &dyn Fn(&str, usize) -> String,
) -> Result<usize, SandboxError> {
    let appointments: Vec<Value> =
        db.all("Appointment").filter(|a| a["status"] == "booked").map(|a| a.as_ref().clone()).collect();
    let mut made = 0;
    for appointment in appointments {
        let id = appointment["id"].as_str().unwrap_or_default().to_owned();
        let encounter_id = id_for(&id, db.all("Encounter").count() + 1);
        if db.all("Encounter").any(|e| e["appointment"][0]["reference"] == format!("Appointment/{id}")) {
            continue;
        }
        let actors: Vec<&str> = appointment["participant"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["actor"]["reference"].as_str())
            .collect();
        let patient = actors.iter().find(|r| r.starts_with("Patient/")).copied().unwrap_or_default();
        let practitioner = actors.iter().find(|r| r.starts_with("Practitioner/")).copied().unwrap_or_default();
        let encounter = json!({
            "resourceType": "Encounter", "id": encounter_id, "status": "planned",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR", "display": "virtual"},
            "subject": {"reference": patient},
            "participant": [{"individual": {"reference": practitioner}}],
            "appointment": [{"reference": format!("Appointment/{id}")}]
        });
        db.write(encounter, 1, stamp)?;
        made += 1;
    }
    Ok(made)
}
