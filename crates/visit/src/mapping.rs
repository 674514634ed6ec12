//! Artifacts → FHIR R4 resources. Every resource carries a Telechart-minted identifier so that a
//! write whose outcome is unknown can be found again by searching the EHR.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use telechart_fhir::terminology::{self, VitalSpec};
use telechart_fhir::{
    Attachment, CodeableConcept, Coding, Condition, DocumentReference, DocumentReferenceContent,
    DocumentReferenceContext, Encounter, EncounterParticipant, Identifier, Meta, Observation, ObservationComponent,
    Period, Quantity, Reference,
};

use crate::{
    CarePlanRecord, ConsentRecord, Diagnosis, DocumentKind, EncounterStatusChange, Order, OrderKind, SignedNote,
    VisitDocument, VisitError, VitalMeasurement, VitalValue,
};

/// What every resource of one visit refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitContext {
    /// The system of Telechart-minted identifiers (one per deployment).
    pub identifier_system: String,
    pub visit_id: String,
    /// `Patient/{id}` in the target EHR.
    pub patient: String,
    /// `Practitioner/{id}` of the clinician, when the appointment names one.
    pub practitioner: Option<String>,
    /// `Appointment/{id}` in the target EHR.
    pub appointment: String,
}

impl VisitContext {
    pub fn identifier(&self, value: &str) -> Identifier {
        Identifier::telechart(&self.identifier_system, value)
    }

    /// The identifier of the visit's Encounter: the visit id.
    pub fn encounter_identifier(&self) -> Identifier {
        self.identifier(&self.visit_id)
    }
}

/// FHIR `instant`/`dateTime` text: seconds, UTC, `Z`.
pub fn format_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn virtual_class() -> Coding {
    let (code, display) = terminology::ENCOUNTER_CLASS_VIRTUAL;
    Coding::new(terminology::ACT_CODE, code, display)
}

/// A new Encounter for an EHR that lets us create one and has none for the appointment.
pub fn encounter_for_create(ctx: &VisitContext, change: &EncounterStatusChange) -> Encounter {
    let at = format_instant(change.at);
    let ended = change.to.is_terminal();
    Encounter {
        resource_type: Default::default(),
        id: None,
        meta: None,
        identifier: vec![ctx.encounter_identifier()],
        status: change.to.encounter_status().to_owned(),
        status_history: Vec::new(),
        class: virtual_class(),
        type_: Vec::new(),
        service_type: Vec::new(),
        subject: Reference::to(ctx.patient.clone()),
        participant: ctx
            .practitioner
            .iter()
            .map(|p| EncounterParticipant {
                type_: vec![CodeableConcept::coded(terminology::PARTICIPATION_TYPE, "PPRF", "primary performer")],
                individual: Reference::to(p.clone()),
            })
            .collect(),
        appointment: vec![Reference::to(ctx.appointment.clone())],
        period: Some(Period { start: Some(at.clone()), end: ended.then_some(at) }),
    }
}

/// Applies a status change to an Encounter read from the EHR, keeping every element we do not own.
/// Returns false when the EHR already shows the change (a replay), so nothing needs writing.
pub fn apply_encounter_status(
    encounter: &mut Value,
    ctx: &VisitContext,
    change: &EncounterStatusChange,
) -> Result<bool, VisitError> {
    let Some(object) = encounter.as_object_mut() else {
        return Err(VisitError::invalid("Encounter", "the EHR returned a non-object Encounter"));
    };
    let target = change.to.encounter_status();
    let current = object.get("status").and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let at = format_instant(change.at);
    if current == target {
        return Ok(false);
    }
    // statusHistory records the status being left, from when it began to now.
    let since = object
        .get("statusHistory")
        .and_then(Value::as_array)
        .and_then(|h| h.last())
        .and_then(|last| last.pointer("/period/end"))
        .or_else(|| object.get("period").and_then(|p| p.get("start")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut left = json!({"end": at});
    if let Some(since) = since {
        left["start"] = Value::String(since);
    }
    let history = object.entry("statusHistory").or_insert_with(|| json!([]));
    if let Some(history) = history.as_array_mut() {
        history.push(json!({"status": current, "period": left}));
    }
    object.insert("status".into(), Value::String(target.to_owned()));
    let period = object.entry("period").or_insert_with(|| json!({}));
    if let Some(period) = period.as_object_mut() {
        period.entry("start").or_insert_with(|| Value::String(at.clone()));
        if change.to.is_terminal() {
            period.insert("end".into(), Value::String(at));
        }
    }
    let ours = serde_json::to_value(ctx.encounter_identifier()).unwrap_or(Value::Null);
    let identifiers = object.entry("identifier").or_insert_with(|| json!([]));
    if let Some(list) = identifiers.as_array_mut()
        && !list.iter().any(|i| i.get("system") == ours.get("system") && i.get("value") == ours.get("value"))
    {
        list.push(ours);
    }
    Ok(true)
}

fn quantity(value: &telechart_fhir::Decimal, spec: &VitalSpec, ucum: &str) -> Quantity {
    let display = spec.unit(ucum).map_or(ucum, |u| u.display);
    Quantity {
        value: value.clone(),
        unit: display.to_owned(),
        system: terminology::UCUM.to_owned(),
        code: ucum.to_owned(),
    }
}

fn loinc(spec: &VitalSpec) -> CodeableConcept {
    CodeableConcept::coded(terminology::LOINC, spec.loinc, spec.display)
}

/// One vital-signs Observation (R4 vital-signs profile) for one measurement.
pub fn vital_observation(
    ctx: &VisitContext,
    artifact_id: &str,
    vital: &VitalMeasurement,
    encounter_id: Option<&str>,
    issued: DateTime<Utc>,
) -> Result<Observation, VisitError> {
    let spec = vital.spec().ok_or_else(|| VisitError::invalid("type", format!("unknown vital sign {}", vital.name)))?;
    let (value_quantity, component) = match &vital.value {
        VitalValue::Single(v) => (Some(quantity(v, spec, &vital.unit)), Vec::new()),
        VitalValue::BloodPressure { systolic, diastolic } => (
            None,
            vec![
                ObservationComponent {
                    code: loinc(&terminology::SYSTOLIC),
                    value_quantity: quantity(systolic, &terminology::SYSTOLIC, &vital.unit),
                },
                ObservationComponent {
                    code: loinc(&terminology::DIASTOLIC),
                    value_quantity: quantity(diastolic, &terminology::DIASTOLIC, &vital.unit),
                },
            ],
        ),
    };
    // The patient's own device, contained: it exists only as the source of this measurement.
    let contained: Vec<Value> = vital
        .device
        .iter()
        .map(|d| {
            let (code, text) = d.kind.coding();
            let mut device = json!({"resourceType": "Device", "id": "home-device",
                "type": {"text": text}, "patient": {"reference": ctx.patient}});
            if let Some(code) = code {
                device["type"]["coding"] = json!([{"system": terminology::SNOMED, "code": code, "display": text}]);
            }
            if let Some(m) = &d.manufacturer {
                device["manufacturer"] = json!(m);
            }
            if let Some(m) = &d.model {
                device["modelNumber"] = json!(m);
            }
            if let Some(s) = &d.serial_number {
                device["serialNumber"] = json!(s);
            }
            device
        })
        .collect();
    Ok(Observation {
        resource_type: Default::default(),
        id: None,
        device: vital.device.as_ref().map(|_| Reference::to("#home-device".to_owned())),
        contained,
        meta: Some(Meta {
            profile: vec![terminology::VITAL_SIGNS_PROFILE.to_owned(), spec.profile.to_owned()],
            ..Meta::default()
        }),
        identifier: vec![ctx.identifier(artifact_id)],
        status: "final".to_owned(),
        category: vec![CodeableConcept::coded(terminology::OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")],
        code: loinc(spec),
        subject: Reference::to(ctx.patient.clone()),
        encounter: encounter_id.map(|e| Reference::to(telechart_fhir::reference_string("Encounter", e))),
        effective_date_time: format_instant(vital.effective),
        issued: Some(format_instant(issued)),
        performer: ctx.practitioner.iter().map(|p| Reference::to(p.clone())).collect(),
        value_quantity,
        component,
    })
}

/// What differs between the DocumentReferences of a visit.
struct DocumentParts {
    type_: (&'static str, &'static str),
    description: String,
    author: Option<String>,
    authenticator: Option<String>,
    date: DateTime<Utc>,
    attachment: Attachment,
    /// The EHR id of the DocumentReference this one replaces (an amended note).
    replaces: Option<String>,
}

fn document_reference(
    ctx: &VisitContext,
    artifact_id: &str,
    encounter_id: Option<&str>,
    parts: DocumentParts,
) -> DocumentReference {
    let (code, display) = parts.type_;
    DocumentReference {
        resource_type: Default::default(),
        id: None,
        meta: None,
        identifier: vec![ctx.identifier(artifact_id)],
        status: "current".to_owned(),
        doc_status: Some("final".to_owned()),
        type_: CodeableConcept::coded(terminology::LOINC, code, display),
        category: vec![CodeableConcept::coded(terminology::DOCUMENT_CLASS_US_CORE, "clinical-note", "Clinical Note")],
        subject: Reference::to(ctx.patient.clone()),
        date: format_instant(parts.date),
        author: parts.author.into_iter().map(Reference::to).collect(),
        authenticator: parts.authenticator.map(Reference::to),
        relates_to: parts
            .replaces
            .map(|id| telechart_fhir::DocumentReferenceRelatesTo {
                code: "replaces".into(),
                target: Reference::to(telechart_fhir::reference_string("DocumentReference", &id)),
            })
            .into_iter()
            .collect(),
        description: Some(parts.description),
        content: vec![DocumentReferenceContent { attachment: parts.attachment }],
        context: encounter_id.map(|e| DocumentReferenceContext {
            encounter: vec![Reference::to(telechart_fhir::reference_string("Encounter", e))],
            period: None,
        }),
    }
}

/// Makes `resource` stand on its own in another organisation's EHR, which holds none of the
/// visit's practitioners: each literal `Practitioner/{id}` reference becomes a logical one — the
/// type and an identifier naming the id in the source EHR (`system`) — which R4 allows
/// (Reference.identifier) and which never points at a wrong record there.
pub fn detach_practitioners(resource: &mut Value, system: &str) {
    match resource {
        Value::Object(map) => {
            let id = map.get("reference").and_then(Value::as_str).and_then(|r| r.strip_prefix("Practitioner/"));
            if let Some(id) = id.map(str::to_owned) {
                map.remove("reference");
                map.insert("type".into(), Value::String("Practitioner".into()));
                map.insert("identifier".into(), json!({"system": system, "value": id}));
            } else {
                map.values_mut().for_each(|v| detach_practitioners(v, system));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| detach_practitioners(v, system)),
        _ => {}
    }
}

/// The signed note as a DocumentReference (LOINC 11506-3 progress note, base64 attachment);
/// an amendment `replaces` the EHR's DocumentReference `replaced`.
pub fn note_document(
    ctx: &VisitContext,
    artifact_id: &str,
    note: &SignedNote,
    encounter_id: Option<&str>,
    replaced: Option<&str>,
) -> DocumentReference {
    let data = base64::engine::general_purpose::STANDARD.encode(note.text.as_bytes());
    let signed_at = format_instant(note.signed_at);
    document_reference(
        ctx,
        artifact_id,
        encounter_id,
        DocumentParts {
            type_: terminology::NOTE_PROGRESS,
            description: note.title.clone(),
            author: Some(note.author.clone()),
            authenticator: Some(note.author.clone()),
            date: note.signed_at,
            attachment: Attachment {
                content_type: Some(format!("{}; charset=utf-8", note.content_type)),
                language: None,
                data: Some(data),
                size: Some(note.text.len() as u64),
                hash: None,
                title: Some(note.title.clone()),
                creation: Some(signed_at),
            },
            replaces: replaced.map(str::to_owned),
        },
    )
}

/// A transcript, attachment or consent form as a DocumentReference: LOINC type by kind, the
/// bytes base64 with their size and (as R4 defines it) SHA-1 hash.
pub fn visit_document(
    ctx: &VisitContext,
    artifact_id: &str,
    document: &VisitDocument,
    encounter_id: Option<&str>,
) -> DocumentReference {
    let type_ = match document.kind {
        DocumentKind::ConsentForm => terminology::CONSENT_DOCUMENT,
        DocumentKind::AfterVisitSummary => terminology::EPISODE_SUMMARY,
        DocumentKind::Attachment if document.content_type.starts_with("image/") => terminology::PHOTOGRAPHIC_IMAGE,
        DocumentKind::ChatTranscript | DocumentKind::VideoTranscript | DocumentKind::Attachment => {
            terminology::NOTE_GENERIC
        }
    };
    let content_type = if document.content_type.starts_with("text/") {
        format!("{}; charset=utf-8", document.content_type)
    } else {
        document.content_type.clone()
    };
    document_reference(
        ctx,
        artifact_id,
        encounter_id,
        DocumentParts {
            type_,
            description: document.title.clone(),
            author: document.author.clone(),
            authenticator: None,
            date: document.created_at,
            attachment: Attachment {
                content_type: Some(content_type),
                language: document.language.clone(),
                data: Some(document.data.clone()),
                size: Some(document.size),
                hash: Some(document.sha1_base64.clone()),
                title: Some(document.title.clone()),
                creation: Some(format_instant(document.created_at)),
            },
            replaces: None,
        },
    )
}

/// A diagnosis as an R4 Condition: ICD-10-CM code, category `encounter-diagnosis`, active and
/// confirmed, recorded by the clinician in this Encounter.
pub fn condition(
    ctx: &VisitContext,
    artifact_id: &str,
    diagnosis: &Diagnosis,
    encounter_id: Option<&str>,
) -> Condition {
    Condition {
        resource_type: Default::default(),
        id: None,
        identifier: vec![ctx.identifier(artifact_id)],
        clinical_status: CodeableConcept::coded(terminology::CONDITION_CLINICAL, "active", "Active"),
        verification_status: CodeableConcept::coded(terminology::CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        category: vec![CodeableConcept::coded(
            terminology::CONDITION_CATEGORY,
            "encounter-diagnosis",
            "Encounter Diagnosis",
        )],
        code: CodeableConcept::coded(telechart_fhir::icd10cm::SYSTEM, &diagnosis.code, &diagnosis.display),
        subject: Reference::to(ctx.patient.clone()),
        encounter: encounter_id.map(|e| Reference::to(telechart_fhir::reference_string("Encounter", e))),
        recorded_date: Some(format_instant(diagnosis.recorded_at)),
        recorder: Some(Reference::to(diagnosis.recorder.clone())),
    }
}

/// Adds `Encounter.diagnosis` entries (`use` billing, with rank) for Conditions the EHR holds,
/// keeping every other element. Returns false when every entry is there already (a replay).
pub fn apply_encounter_diagnoses(encounter: &mut Value, conditions: &[(String, u32)]) -> Result<bool, VisitError> {
    let Some(object) = encounter.as_object_mut() else {
        return Err(VisitError::invalid("Encounter", "the EHR returned a non-object Encounter"));
    };
    let list = object.entry("diagnosis").or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return Err(VisitError::invalid("Encounter.diagnosis", "is not a list"));
    };
    let mut changed = false;
    for (reference, rank) in conditions {
        if list.iter().any(|d| d.pointer("/condition/reference").and_then(Value::as_str) == Some(reference.as_str())) {
            continue;
        }
        list.push(json!({
            "condition": {"reference": reference},
            "use": {"coding": [{"system": terminology::DIAGNOSIS_ROLE, "code": "billing", "display": "Billing"}]},
            "rank": rank,
        }));
        changed = true;
    }
    Ok(changed)
}

/// A lab, imaging or referral order as an R4 ServiceRequest (active, intent order).
pub fn service_request(ctx: &VisitContext, artifact_id: &str, order: &Order, encounter_id: &str) -> Value {
    let (category, category_display) = match order.kind {
        OrderKind::Imaging => ("363679005", "Imaging"),
        OrderKind::Referral => ("3457005", "Patient referral"),
        OrderKind::Lab | OrderKind::Medication => ("108252007", "Laboratory procedure"),
    };
    let mut request = json!({
        "resourceType": "ServiceRequest",
        "identifier": [ctx.identifier(artifact_id)],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": terminology::SNOMED, "code": category, "display": category_display}]}],
        "code": {"coding": [{"system": order.system, "code": order.code, "display": order.display}], "text": order.display},
        "subject": {"reference": ctx.patient},
        "encounter": {"reference": telechart_fhir::reference_string("Encounter", encounter_id)},
        "authoredOn": format_instant(order.authored_at),
        "requester": {"reference": order.requester},
    });
    if let Some(note) = &order.note {
        request["note"] = json!([{"text": note}]);
    }
    request
}

/// A prescription as an R4 MedicationRequest (active, intent order, RxNorm, the sig as text).
pub fn medication_request(ctx: &VisitContext, artifact_id: &str, order: &Order, encounter_id: &str) -> Value {
    let mut request = json!({
        "resourceType": "MedicationRequest",
        "identifier": [ctx.identifier(artifact_id)],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": order.system, "code": order.code, "display": order.display}], "text": order.display},
        "subject": {"reference": ctx.patient},
        "encounter": {"reference": telechart_fhir::reference_string("Encounter", encounter_id)},
        "authoredOn": format_instant(order.authored_at),
        "requester": {"reference": order.requester},
        "dosageInstruction": [{"text": order.dosage.clone().unwrap_or_default()}],
    });
    if let Some(note) = &order.note {
        request["note"] = json!([{"text": note}]);
    }
    request
}

/// The plan as an R4 CarePlan (active, intent plan): `addresses` the Conditions this EHR holds,
/// each activity a `reference` to the order it carries out where this EHR holds it (R4 cpl-3: a
/// reference or a detail, never both), else a not-started `detail`; `goal` the Goals this EHR
/// holds, and the goals it does not hold in `note`, so no goal is lost on the way.
pub fn care_plan(
    ctx: &VisitContext,
    artifact_id: &str,
    plan: &CarePlanRecord,
    encounter_id: &str,
    links: &crate::CarePlanLinks,
) -> Value {
    let activities: Vec<Value> = plan
        .activities
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if let Some(Some(reference)) = links.activity_references.get(i) {
                return json!({"reference": {"reference": reference, "display": a.description}});
            }
            let mut detail = json!({"status": "not-started", "description": a.description});
            if let Some(when) = &a.scheduled {
                detail["scheduledString"] = json!(when);
            }
            json!({"detail": detail})
        })
        .collect();
    let mut resource = json!({
        "resourceType": "CarePlan",
        "identifier": [ctx.identifier(artifact_id)],
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "code": "assess-plan", "display": "Assessment and Plan of Treatment"}]}],
        "title": plan.title,
        "subject": {"reference": ctx.patient},
        "encounter": {"reference": telechart_fhir::reference_string("Encounter", encounter_id)},
        "created": format_instant(plan.created_at),
        "author": {"reference": plan.author},
        "activity": activities,
    });
    if let Some(description) = &plan.description {
        resource["description"] = json!(description);
    }
    if !links.addresses.is_empty() {
        resource["addresses"] = links.addresses.iter().map(|r| json!({"reference": r})).collect();
    }
    if !links.goals.is_empty() {
        resource["goal"] = links.goals.iter().map(|r| json!({"reference": r})).collect();
    }
    if !links.goals_as_text.is_empty() {
        resource["note"] = links.goals_as_text.iter().map(|g| json!({"text": format!("Goal: {g}")})).collect();
    }
    resource
}

/// A goal of the plan as an R4 Goal (lifecycle active, expressed by the clinician), addressing
/// the Conditions this EHR holds; a measurable target is `target.measure` (R4 gol-1 needs a
/// measure wherever a target has a detail, so the target is said as the measure itself).
pub fn goal(ctx: &VisitContext, artifact_id: &str, goal: &crate::GoalRecord, addresses: &[String]) -> Value {
    let mut resource = json!({
        "resourceType": "Goal",
        "identifier": [ctx.identifier(artifact_id)],
        "lifecycleStatus": "active",
        "description": {"text": goal.description},
        "subject": {"reference": ctx.patient},
        "startDate": goal.created_at.format("%Y-%m-%d").to_string(),
        "expressedBy": {"reference": goal.author},
    });
    if let Some(measure) = &goal.measure {
        resource["target"] = json!([{"measure": {"text": measure}}]);
    }
    if !addresses.is_empty() {
        resource["addresses"] = addresses.iter().map(|r| json!({"reference": r})).collect();
    }
    resource
}

/// The system of the Device identifier that names a drafting engine (the EHR holds no Device
/// for it, so the agent is a logical reference).
pub const DRAFTING_ENGINE_SYSTEM: &str = "urn:telechart:drafting-engine";

/// The Provenance of a drafted note as R4 has it: target the signed note's DocumentReference,
/// each cited source an entity (`source` role: the note was derived from it), the engine an
/// `assembler` Device and the signing Practitioner the `author`. `target` and `sources` are
/// references in the target EHR.
pub fn note_provenance(record: &crate::NoteProvenance, target: &str, sources: &[String]) -> Value {
    let participant = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
    let entities: Vec<Value> =
        sources.iter().map(|what| json!({"role": "source", "what": {"reference": what}})).collect();
    let mut resource = json!({
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": format_instant(record.signed_at),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE", "display": "create"}]},
        "agent": [
            {"type": {"coding": [{"system": participant, "code": "author", "display": "Author"}]},
             "who": {"reference": record.signer}},
            {"type": {"coding": [{"system": participant, "code": "assembler", "display": "Assembler"}]},
             "who": {"type": "Device", "identifier": {"system": DRAFTING_ENGINE_SYSTEM, "value": record.engine}, "display": record.engine}},
        ],
    });
    if !entities.is_empty() {
        resource["entity"] = Value::Array(entities);
    }
    resource
}

/// The patient's consent to telehealth care as an R4 Consent (scope treatment, opt-in, permit
/// from the signature on), its source the signed form the EHR already holds.
/// The Consent as the EHR receives it: Telechart's own resource without its local id, with the
/// identifier every version shares, the patient as this EHR knows them, and the signed form as it
/// is filed there. `identifier` is the value of Telechart's identifier for the consent.
pub fn consent(ctx: &VisitContext, identifier: &str, record: &ConsentRecord, form_document_id: Option<&str>) -> Value {
    let signed = format_instant(record.signed_at);
    if let Some(resource) = &record.resource {
        let mut c = resource.clone();
        if let Some(map) = c.as_object_mut() {
            map.remove("id");
            map.remove("sourceReference");
        }
        c["identifier"] = json!([ctx.identifier(identifier)]);
        c["patient"] = json!({"reference": ctx.patient});
        c["performer"] = json!([{"reference": ctx.patient}]);
        if let Some(form) = form_document_id {
            c["sourceReference"] = json!({"reference": telechart_fhir::reference_string("DocumentReference", form)});
        }
        return c;
    }
    let mut c = json!({
        "resourceType": "Consent",
        "identifier": [ctx.identifier(identifier)],
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment", "display": "Treatment"}]},
        "category": [{"coding": [{"system": terminology::LOINC, "code": terminology::CONSENT_DOCUMENT.0, "display": terminology::CONSENT_DOCUMENT.1}]}],
        "patient": {"reference": ctx.patient},
        "dateTime": signed,
        "performer": [{"reference": ctx.patient}],
        "policyRule": {"coding": [{"system": terminology::ACT_CODE, "code": "OPTIN", "display": "opt-in"}]},
        "provision": {"type": "permit", "period": {"start": signed}},
    });
    if let Some(form) = form_document_id {
        c["sourceReference"] = json!({"reference": telechart_fhir::reference_string("DocumentReference", form)});
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VisitState;

    fn ctx() -> VisitContext {
        VisitContext {
            identifier_system: "urn:telechart:test".into(),
            visit_id: "v1".into(),
            patient: "Patient/p1".into(),
            practitioner: Some("Practitioner/d1".into()),
            appointment: "Appointment/a1".into(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn blood_pressure_is_a_panel_with_two_components() {
        let vital = VitalMeasurement {
            name: "blood-pressure".into(),
            value: VitalValue::BloodPressure { systolic: 120.into(), diastolic: 80.into() },
            unit: "mm[Hg]".into(),
            effective: at("2026-11-26T10:00:00Z"),
            device: Some(crate::HomeDevice {
                kind: crate::HomeDeviceKind::BloodPressureCuff,
                manufacturer: Some("Omron".into()),
                model: Some("BP7250".into()),
                serial_number: None,
            }),
        };
        let obs = vital_observation(&ctx(), "art-1", &vital, Some("e9"), at("2026-11-26T10:01:00Z")).unwrap();
        let json = serde_json::to_value(&obs).unwrap();
        assert_eq!(json["code"]["coding"][0]["code"], "85354-9");
        assert_eq!(json["component"][0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(json["component"][1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(json["component"][1]["valueQuantity"]["code"], "mm[Hg]");
        assert_eq!(json["encounter"]["reference"], "Encounter/e9");
        assert!(json.get("valueQuantity").is_none());
        assert_eq!(json["device"]["reference"], "#home-device");
        assert_eq!(json["contained"][0]["type"]["coding"][0]["code"], "70665002");
        assert_eq!(json["contained"][0]["patient"]["reference"], "Patient/p1");
        assert_eq!(json["identifier"][0]["value"], "art-1");
    }

    #[test]
    fn encounter_status_change_keeps_unknown_elements_and_records_history() {
        let mut enc = json!({"resourceType":"Encounter","id":"e1","status":"arrived","class":{"code":"VR"},
            "period":{"start":"2026-11-26T10:00:00Z"},"extension":[{"url":"x","valueString":"kept"}]});
        let change = EncounterStatusChange {
            from: VisitState::Arrived,
            to: VisitState::InProgress,
            at: at("2026-11-26T10:05:00Z"),
        };
        assert!(apply_encounter_status(&mut enc, &ctx(), &change).unwrap());
        assert_eq!(enc["status"], "in-progress");
        assert_eq!(
            enc["statusHistory"][0],
            json!({"status":"arrived","period":{"end":"2026-11-26T10:05:00Z","start":"2026-11-26T10:00:00Z"}})
        );
        assert_eq!(enc["extension"][0]["valueString"], "kept");
        assert_eq!(enc["identifier"][0]["value"], "v1");
        // A replay of the same change writes nothing.
        assert!(!apply_encounter_status(&mut enc, &ctx(), &change).unwrap());
    }

    #[test]
    fn practitioners_become_logical_references_for_another_organisation() {
        let mut resource = json!({
            "subject": {"reference": "Patient/p9"},
            "author": [{"reference": "Practitioner/d1"}],
            "authenticator": {"reference": "Practitioner/d1"},
            "contained": [{"performer": [{"reference": "Practitioner/d2", "display": "Dr Two"}]}],
        });
        detach_practitioners(&mut resource, "urn:telechart:practitioner:ehr-a");
        let logical = |id: &str| json!({"type": "Practitioner", "identifier": {"system": "urn:telechart:practitioner:ehr-a", "value": id}});
        assert_eq!(resource["subject"], json!({"reference": "Patient/p9"}), "the patient is the recipient's own");
        assert_eq!(resource["author"][0], logical("d1"));
        assert_eq!(resource["authenticator"], logical("d1"));
        let mut performer = logical("d2");
        performer["display"] = json!("Dr Two");
        assert_eq!(resource["contained"][0]["performer"][0], performer);
    }
}
