//! Vendor APIs beside FHIR: athena's document API, Epic's break-the-glass refusals, and an
//! HL7v2 MLLP listener.

use super::*;

/// §8.22: athena's own document API, where notes go when its FHIR API takes none: one PDF per
/// call, with a department and a document class; `{"error": …}` otherwise.
pub(crate) async fn athena_document(
    State(sandbox): State<Sandbox>,
    Path((practice, patient)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let error = |status: StatusCode, message: &str| (status, axum::Json(json!({"error": message}))).into_response();
    if !sandbox.state.personality.quirks().practice_apis {
        return error(StatusCode::NOT_FOUND, "no such API on this server");
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let (Some(_department), Some(class), Some(contents)) =
        (field("departmentid"), field("documentsubclass"), field("attachmentcontents"))
    else {
        return error(StatusCode::BAD_REQUEST, "departmentid, documentsubclass and attachmentcontents are required");
    };
    let pdf = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, contents).unwrap_or_default();
    if !pdf.starts_with(b"%PDF-") {
        return error(StatusCode::BAD_REQUEST, "attachmentcontents must be a base64 PDF");
    }
    let Ok(mut db) = sandbox.state.db.write() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "sandbox state is poisoned");
    };
    // The practice API knows a patient by its own number (`a-{practice}.E-{n}` in FHIR, §8.24).
    let native = format!("a-{practice}.E-{patient}");
    let patient = if db.exists("Patient", &native) { native } else { patient };
    if !db.exists("Patient", &patient) {
        return error(StatusCode::NOT_FOUND, "The patient ID is invalid.");
    }
    // §8.27: injected faults reach the practice API too (`resourceType` "clinicaldocument").
    let fault = sandbox.take_fault(&Method::POST, "clinicaldocument");
    if let Some(f) = fault.as_ref().filter(|f| !f.after_commit) {
        return vendor_fault(f);
    }
    let id = db.mint_id();
    let stamp = wall_clock();
    let document = json!({"resourceType": "DocumentReference", "id": id, "status": "current", "docStatus": "final",
        "type": {"text": class}, "subject": {"reference": format!("Patient/{patient}")}, "date": stamp,
        "description": field("internalnote").unwrap_or_default(),
        "content": [{"attachment": {"contentType": "application/pdf", "data": contents, "size": pdf.len()}}],
        "extension": [{"url": "https://fhir.athena.io/StructureDefinition/ah-practice", "valueReference": {"reference": athena_practice(&practice)}}]});
    if let Err(e) = db.write(document, 1, &stamp) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    if let Some(f) = fault {
        return vendor_fault(&f);
    }
    axum::Json(json!({"success": true, "clinicaldocumentid": id})).into_response()
}

/// An injected fault as the practice API answers it (`{"error": …}`, `Retry-After` when set).
fn vendor_fault(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response =
        (status, axum::Json(json!({"error": format!("injected fault {}", fault.status)}))).into_response();
    if let Some(seconds) = fault.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The athena encounter a vitals call names (`a-{practice}.E-{n}` in FHIR), or the error reply.
fn athena_encounter(sandbox: &Sandbox, practice: &str, encounter: &str) -> Result<String, Box<Response>> {
    let error =
        |status: StatusCode, message: &str| Box::new((status, axum::Json(json!({"error": message}))).into_response());
    if !sandbox.state.personality.quirks().practice_apis {
        return Err(error(StatusCode::NOT_FOUND, "no such API on this server"));
    }
    if practice != ATHENA_PRACTICE {
        return Err(error(StatusCode::FORBIDDEN, "The practice ID is not accessible."));
    }
    // The practice API knows an encounter by its number (`a-{practice}.E-{n}` in FHIR).
    let native = format!("a-{practice}.E-{encounter}");
    let exists = |id: &str| sandbox.state.db.read().is_ok_and(|db| db.exists("Encounter", id));
    match [native.as_str(), encounter].into_iter().find(|id| exists(id)) {
        Some(id) => Ok(id.to_owned()),
        None => Err(error(StatusCode::NOT_FOUND, "The encounter ID is invalid.")),
    }
}

/// Element ids athena's vitals API takes (VENDORS.md A6).
const ATHENA_VITAL_ELEMENTS: &[&str] = &[
    "VITALS.BLOODPRESSURE.SYSTOLIC",
    "VITALS.BLOODPRESSURE.DIASTOLIC",
    "VITALS.PULSE.RATE",
    "VITALS.RESPIRATIONRATE",
    "VITALS.TEMPERATURE",
    "VITALS.O2SATURATION",
    "VITALS.WEIGHT",
    "VITALS.HEIGHT",
    "VITALS.BMI",
];

/// athena's encounter vitals API: `vitals` is a JSON list of groups, each a list of readings
/// (`clinicalelementid`, `value`, optional `unitofmeasure`, `readingtaken`). All or nothing.
pub(crate) async fn athena_vitals_add(
    State(sandbox): State<Sandbox>,
    Path((practice, encounter)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let error = |status: StatusCode, message: &str| (status, axum::Json(json!({"error": message}))).into_response();
    let encounter = match athena_encounter(&sandbox, &practice, &encounter) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let Some(groups) = form
        .iter()
        .find(|(k, _)| k == "vitals")
        .and_then(|(_, v)| serde_json::from_str::<Value>(v).ok())
        .and_then(|v| v.as_array().cloned())
    else {
        return error(StatusCode::BAD_REQUEST, "vitals is required: a JSON list of reading groups");
    };
    let readings: Vec<Value> = groups.iter().flat_map(|g| g.as_array().cloned().unwrap_or_default()).collect();
    for r in &readings {
        let element = r["clinicalelementid"].as_str().unwrap_or_default();
        if !ATHENA_VITAL_ELEMENTS.contains(&element) {
            return error(StatusCode::BAD_REQUEST, &format!("Invalid clinicalelementid {element:?}."));
        }
        if r["value"].as_str().is_none_or(|v| v.trim().is_empty()) {
            return error(StatusCode::BAD_REQUEST, "Each reading needs a value.");
        }
    }
    let fault = sandbox.take_fault(&Method::POST, "vitals");
    if let Some(f) = fault.as_ref().filter(|f| !f.after_commit) {
        return vendor_fault(f);
    }
    let Ok(mut stored) = sandbox.state.athena_vitals.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "sandbox state is poisoned");
    };
    let mut ids = Vec::with_capacity(readings.len());
    for mut r in readings {
        let id = (stored.len() + 1001).to_string();
        r["vitalid"] = json!(id);
        r["encounter"] = json!(encounter);
        stored.push(r);
        ids.push(id);
    }
    if let Some(f) = fault {
        return vendor_fault(&f);
    }
    axum::Json(json!({"success": true, "vitalids": ids})).into_response()
}

pub(crate) async fn athena_vitals_list(
    State(sandbox): State<Sandbox>,
    Path((practice, encounter)): Path<(String, String)>,
) -> Response {
    let encounter = match athena_encounter(&sandbox, &practice, &encounter) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let readings: Vec<Value> = sandbox
        .state
        .athena_vitals
        .lock()
        .map(|all| {
            all.iter()
                .filter(|r| r["encounter"] == encounter.as_str())
                .map(|r| {
                    let mut r = r.clone();
                    if let Some(o) = r.as_object_mut() {
                        o.remove("encounter");
                    }
                    r
                })
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({"readings": readings})).into_response()
}

impl Sandbox {
    /// §8.12: an Epic-like server refuses a restricted patient (4131) and that patient's
    /// sensitive records (4130) until someone breaks the glass in the EHR.
    pub(crate) fn break_the_glass(&self, rtype: &str, resource: &Value) -> Option<Response> {
        if self.state.personality != Personality::Epic {
            return None;
        }
        let restricted = self.state.restricted.lock().ok()?;
        let (patient, code, text) = if rtype == "Patient" {
            (
                format!("Patient/{}", resource["id"].as_str().unwrap_or_default()),
                "4131",
                "restricted patient: break the glass",
            )
        } else {
            let subject =
                resource["subject"]["reference"].as_str().or_else(|| resource["patient"]["reference"].as_str())?;
            (subject.to_owned(), "4130", "break-the-glass does not authorize this resource")
        };
        if !restricted.contains(&patient) {
            return None;
        }
        let outcome = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "suppressed",
            "details": {"coding": [{"system": personality::EPIC_ERRORS, "code": code}], "text": text}, "diagnostics": text}]});
        Some(fhir(StatusCode::FORBIDDEN, &outcome))
    }
    /// An MLLP listener taking HL7v2 MDM^T02 and ORU^R01 for known patients, answering ACK AA
    /// (or AE with the reason). Returns its address.
    pub async fn spawn_mllp(&self, addr: SocketAddr) -> Result<SocketAddr, SandboxError> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| SandboxError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| SandboxError::Bind { addr, source })?;
        let sandbox = self.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sandbox = sandbox.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut frame = Vec::new();
                    let mut buffer = [0_u8; 8192];
                    loop {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => frame.extend_from_slice(&buffer[..n]),
                        }
                        if frame.ends_with(&[0x1C, 0x0D]) {
                            break;
                        }
                    }
                    let message = String::from_utf8_lossy(&frame)
                        .trim_matches(|c| c == '\u{b}' || c == '\u{1c}' || c == '\r')
                        .to_owned();
                    let ack = sandbox.take_hl7(&message);
                    let mut reply = vec![0x0B];
                    reply.extend_from_slice(ack.as_bytes());
                    reply.extend_from_slice(&[0x1C, 0x0D]);
                    let _ = stream.write_all(&reply).await;
                });
            }
        });
        Ok(bound)
    }

    /// Checks one HL7v2 message and returns the ACK.
    pub(crate) fn take_hl7(&self, message: &str) -> String {
        let segments: Vec<Vec<&str>> = message.split('\r').map(|s| s.split('|').collect()).collect();
        let field = |segment: &str, n: usize| {
            segments.iter().find(|s| s.first() == Some(&segment)).and_then(|s| s.get(n).copied()).unwrap_or_default()
        };
        // MSH-1 is the field separator itself, so MSH-n is at index n - 1.
        let control = field("MSH", 9);
        let kind = field("MSH", 8);
        let patient = field("PID", 3);
        let error = if segments.first().and_then(|s| s.first()) != Some(&"MSH") {
            Some("the message must begin with MSH")
        } else if !(kind.starts_with("MDM^T02") || kind.starts_with("ORU^R01")) {
            Some("only MDM^T02 and ORU^R01 are taken here")
        } else if !self.state.db.read().is_ok_and(|db| db.exists("Patient", patient)) {
            Some("unknown patient in PID-3")
        } else {
            None
        };
        if error.is_none()
            && let Ok(mut received) = self.state.hl7_received.lock()
        {
            received.push(message.to_owned());
        }
        let stamp = wall_clock().replace(['-', ':', 'T'], "");
        let stamp = stamp.get(..14).unwrap_or_default();
        match error {
            None => {
                format!("MSH|^~\\&|EHR|CLINIC|TELECHART|TELECHART|{stamp}||ACK|ack-{control}|P|2.5.1\rMSA|AA|{control}")
            }
            Some(why) => format!(
                "MSH|^~\\&|EHR|CLINIC|TELECHART|TELECHART|{stamp}||ACK|ack-{control}|P|2.5.1\rMSA|AE|{control}|{why}"
            ),
        }
    }

    /// The HL7v2 messages the MLLP listener has taken.
    pub fn hl7_messages(&self) -> Vec<String> {
        self.state.hl7_received.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// How an athena-like event run went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRun {
    /// Deliveries made (each event at least once; some twice).
    pub sent: usize,
    /// Attempts in all, retries included.
    pub attempts: usize,
    /// Deliveries that were never accepted within the retry window.
    pub given_up: usize,
}

impl Sandbox {
    /// §8.25: athena's event platform: one id-only notification per appointment (R4 Subscriptions
    /// Backport `history` Bundle), every other one sent twice, all in reverse order, each signed
    /// `X-Hub-Signature: sha256=<HMAC of the body>`, and retried on anything but 2xx — for an
    /// hour in athena; here `attempts` times, `pause` apart.
    pub async fn send_appointment_events(
        &self,
        url: &str,
        secret: &[u8],
        appointments: &[String],
        attempts: usize,
        pause: Duration,
    ) -> EventRun {
        let http = reqwest::Client::new();
        let mut run = EventRun::default();
        let mut events: Vec<(usize, &String)> = appointments.iter().enumerate().collect();
        events.reverse();
        let duplicated: Vec<(usize, &String)> =
            events.iter().flat_map(|e| if e.0 % 2 == 0 { vec![*e, *e] } else { vec![*e] }).collect();
        for (n, appointment) in duplicated {
            let bundle = json!({"resourceType": "Bundle", "type": "history", "timestamp": wall_clock(), "entry": [
                {"fullUrl": "urn:uuid:status", "resource": {"resourceType": "Parameters", "parameter": [
                    {"name": "subscription", "valueReference": {"reference": "Subscription/appointments"}},
                    {"name": "topic", "valueCanonical": "https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic/Appointment.update"},
                    {"name": "type", "valueCode": "event-notification"},
                    {"name": "notification-event", "part": [
                        {"name": "event-number", "valueString": (n + 1).to_string()},
                        {"name": "focus", "valueReference": {"reference": format!("Appointment/{appointment}")}}]}]}},
                {"fullUrl": format!("{}/Appointment/{appointment}", self.base_url()), "request": {"method": "PUT", "url": format!("Appointment/{appointment}")}}]});
            let body = bundle.to_string();
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            let signature: String =
                aws_lc_rs::hmac::sign(&key, body.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect();
            run.sent += 1;
            let mut accepted = false;
            for attempt in 0..attempts.max(1) {
                if attempt > 0 {
                    tokio::time::sleep(pause).await;
                }
                run.attempts += 1;
                let response = http
                    .post(url)
                    .header("content-type", "application/fhir+json")
                    .header("x-hub-signature", format!("sha256={signature}"))
                    .body(body.clone())
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status().is_success()) {
                    accepted = true;
                    break;
                }
            }
            if !accepted {
                run.given_up += 1;
            }
        }
        run
    }
}
