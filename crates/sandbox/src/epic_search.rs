//! Epic-like searches (`shared/VENDORS.md` §8 items 10 and 11): paging through an opaque
//! `sessionID` that expires (4113), required parameters (4111, 59159), and parameters it does
//! not know ignored with an informational 59100.

use super::*;
use crate::search::SearchRequest;

/// A paging session: the search's filters, page size and the next page's offset.
pub(crate) type PagingSession = (Vec<(String, String)>, usize, usize);

/// Clinical types Epic searches only within a patient (§8.11: 4111 otherwise).
const PATIENT_SCOPED: &[&str] = &[
    "Observation",
    "Condition",
    "DocumentReference",
    "Encounter",
    "MedicationRequest",
    "ServiceRequest",
    "CarePlan",
    "DiagnosticReport",
    "Consent",
];

fn epic_error(status: StatusCode, severity: &str, code: &str, text: &str) -> Box<Response> {
    let body = json!({"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "processing",
        "details": {"coding": [{"system": personality::EPIC_ERRORS, "code": code}], "text": text}, "diagnostics": text}]});
    Box::new(fhir(status, &body))
}

/// A Bundle entry holding an OperationOutcome (search mode `outcome`).
pub(crate) fn outcome_entry(severity: &str, code: &str, text: &str) -> Value {
    json!({"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "informational",
        "details": {"coding": [{"system": personality::EPIC_ERRORS, "code": code}], "text": text}}]},
        "search": {"mode": "outcome"}})
}

/// The search asked for, and the parameters ignored; or Epic's refusal.
pub(crate) fn request(
    sandbox: &Sandbox,
    rtype: &str,
    params: &[(String, String)],
) -> Result<(SearchRequest, Vec<String>), Box<Response>> {
    if let Some((_, session)) = params.iter().find(|(k, _)| k == "sessionID") {
        let expired = sandbox.state.expire_next_session.swap(false, std::sync::atomic::Ordering::SeqCst);
        let found = sandbox.state.paging_sessions.lock().ok().and_then(|s| s.get(session).cloned());
        let Some((filters, count, offset)) = found.filter(|_| !expired) else {
            return Err(epic_error(StatusCode::BAD_REQUEST, "fatal", "4113", "The paging session has expired."));
        };
        return Ok((SearchRequest { filters, count, offset }, Vec::new()));
    }
    let mut request = search::parse(params)
        .map_err(|e| Box::new(outcome(StatusCode::BAD_REQUEST, "invalid", Some(&e.param), &e.message)))?;
    let has = |names: &[&str]| request.filters.iter().any(|(n, _)| names.contains(&n.as_str()));
    if rtype == "Patient" && has(&["birthdate"]) && !has(&["_id", "identifier", "family", "given", "name"]) {
        return Err(epic_error(
            StatusCode::BAD_REQUEST,
            "fatal",
            "59159",
            "A birthdate alone does not identify a patient: add a name or an identifier.",
        ));
    }
    if PATIENT_SCOPED.contains(&rtype) && !has(&["patient", "subject", "_id"]) {
        return Err(epic_error(StatusCode::BAD_REQUEST, "fatal", "4111", "A required parameter is missing: patient."));
    }
    let (known, ignored): (Vec<_>, Vec<_>) =
        request.filters.into_iter().partition(|(name, value)| search::supported(rtype, name, value));
    request.filters = known;
    Ok((request, ignored.into_iter().map(|(name, _)| name).collect()))
}

/// The next page's link: an opaque `sessionID` holding the search and where it stands.
pub(crate) fn next_link(sandbox: &Sandbox, base: &str, rtype: &str, request: &SearchRequest) -> String {
    let session = uuid::Uuid::new_v4().simple().to_string();
    if let Ok(mut sessions) = sandbox.state.paging_sessions.lock() {
        sessions.insert(session.clone(), (request.filters.clone(), request.count, request.offset + request.count));
    }
    format!("{base}/{rtype}?sessionID={session}")
}

/// Control: every paging session open now has expired (as Epic's do after a while), and so
/// has the next one asked for.
pub(crate) async fn expire_sessions(State(sandbox): State<Sandbox>) -> StatusCode {
    if let Ok(mut sessions) = sandbox.state.paging_sessions.lock() {
        sessions.clear();
    }
    sandbox.state.expire_next_session.store(true, std::sync::atomic::Ordering::SeqCst);
    StatusCode::NO_CONTENT
}
