//! The sandbox's control endpoints (`/_sandbox/…`): faults, latency, stats, and what happens in
//! an EHR outside any app — a lab completing an order, a patient merge, a restricted record.

use super::*;

/// Marks a patient's record restricted: under the Epic personality, reads need a break-the-glass.
pub(crate) async fn restrict(State(sandbox): State<Sandbox>, Path(id): Path<String>) -> Response {
    if let Ok(mut restricted) = sandbox.state.restricted.lock() {
        restricted.insert(format!("Patient/{id}"));
    }
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) async fn add_fault(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            sandbox.inject(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => outcome(StatusCode::BAD_REQUEST, "invalid", None, &format!("bad fault: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LatencyBody {
    ms: u64,
}

pub(crate) async fn set_latency(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    match serde_json::from_slice::<LatencyBody>(&body) {
        Ok(b) => {
            sandbox.set_latency(Duration::from_millis(b.ms));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => outcome(StatusCode::BAD_REQUEST, "invalid", None, &format!("expected {{\"ms\": N}}: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Merge {
    /// `Patient/{id}` merged away.
    source: String,
    /// `Patient/{id}` that survives.
    target: String,
}

/// A patient merge as an EHR's HIM team performs it: the source becomes inactive with a
/// `replaced-by` link, the target gains a `replaces` link; writes to the source are refused.
pub(crate) async fn merge(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let merge: Merge = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return outcome(StatusCode::BAD_REQUEST, "invalid", None, &format!("expected {{source, target}}: {e}"));
        }
    };
    let Ok(mut db) = sandbox.state.db.write() else {
        return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
    };
    let id = |r: &str| r.strip_prefix("Patient/").map(str::to_owned);
    let (Some(source_id), Some(target_id)) = (id(&merge.source), id(&merge.target)) else {
        return outcome(StatusCode::BAD_REQUEST, "invalid", None, "source and target must be Patient/{id}");
    };
    let (Some(source), Some(target)) =
        (db.latest("Patient", &source_id).cloned(), db.latest("Patient", &target_id).cloned())
    else {
        return outcome(StatusCode::NOT_FOUND, "not-found", None, "both patients must exist");
    };
    let stamp = wall_clock();
    let version = |r: &Value| r["meta"]["versionId"].as_str().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1) + 1;
    let mut merged = source.as_ref().clone();
    merged["active"] = json!(false);
    merged["link"] = json!([{"other": {"reference": merge.target}, "type": "replaced-by"}]);
    let mut survivor = target.as_ref().clone();
    let links = survivor.as_object_mut().map(|o| o.entry("link").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = links {
        list.push(json!({"other": {"reference": merge.source}, "type": "replaces"}));
    }
    // The merge moves the source's clinical data to the survivor, as an EHR's merge does.
    let mut moved = Vec::new();
    let types: Vec<String> = db.types().cloned().collect();
    for rtype in types.iter().filter(|t| *t != "Patient") {
        for resource in db.all(rtype) {
            let mut copy = resource.as_ref().clone();
            if repoint(&mut copy, &merge.source, &merge.target) {
                let v = version(resource);
                moved.push((copy, v));
            }
        }
    }
    moved.push((merged, version(&source)));
    moved.push((survivor, version(&target)));
    for (resource, v) in moved {
        if let Err(e) = db.write(resource, v, &stamp) {
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, &e.to_string());
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Rewrites every `reference` equal to `from` as `to`; true if any was.
pub(crate) fn repoint(node: &mut Value, from: &str, to: &str) -> bool {
    match node {
        Value::Object(map) => {
            let mut changed = false;
            for (key, value) in map.iter_mut() {
                if key == "reference" && value.as_str() == Some(from) {
                    *value = Value::String(to.to_owned());
                    changed = true;
                } else {
                    changed |= repoint(value, from, to);
                }
            }
            changed
        }
        Value::Array(items) => {
            // Every item, not just up to the first change.
            let mut changed = false;
            for item in items.iter_mut() {
                changed |= repoint(item, from, to);
            }
            changed
        }
        _ => false,
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fulfilment {
    /// The result's value and UCUM unit (e.g. 6.1 and `%` for HbA1c).
    value: Option<serde_json::Number>,
    unit: Option<String>,
    conclusion: Option<String>,
}

/// What the lab does with an order: a final Observation and DiagnosticReport `basedOn` it, and
/// the ServiceRequest marked completed — each a new version the EHR's API then serves.
pub(crate) async fn fulfil(State(sandbox): State<Sandbox>, Path(id): Path<String>, body: Bytes) -> Response {
    let fulfilment: Fulfilment = if body.is_empty() {
        Fulfilment::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(f) => f,
            Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", None, &format!("bad fulfilment: {e}")),
        }
    };
    let Ok(mut db) = sandbox.state.db.write() else {
        return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
    };
    let Some(order) = db.latest("ServiceRequest", &id).cloned() else {
        return outcome(StatusCode::NOT_FOUND, "not-found", None, &format!("ServiceRequest/{id} does not exist"));
    };
    let stamp = wall_clock();
    let version = order["meta"]["versionId"].as_str().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
    let observation_id = db.mint_id();
    let mut observation = json!({
        "resourceType": "Observation", "id": observation_id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "Laboratory"}]}],
        "code": order["code"], "subject": order["subject"], "basedOn": [{"reference": format!("ServiceRequest/{id}")}],
        "effectiveDateTime": stamp, "issued": stamp,
    });
    if let Some(value) = &fulfilment.value {
        observation["valueQuantity"] = json!({"value": value, "unit": fulfilment.unit.clone().unwrap_or_default(),
            "system": "http://unitsofmeasure.org", "code": fulfilment.unit.clone().unwrap_or_default()});
    }
    if order.get("encounter").is_some() {
        observation["encounter"] = order["encounter"].clone();
    }
    let report_id = db.mint_id();
    let mut report = json!({
        "resourceType": "DiagnosticReport", "id": report_id, "status": "final",
        "code": order["code"], "subject": order["subject"], "basedOn": [{"reference": format!("ServiceRequest/{id}")}],
        "effectiveDateTime": stamp, "issued": stamp, "result": [{"reference": format!("Observation/{observation_id}")}],
    });
    if let Some(conclusion) = &fulfilment.conclusion {
        report["conclusion"] = json!(conclusion);
    }
    let mut completed = order.as_ref().clone();
    completed["status"] = json!("completed");
    for (resource, v) in [(observation, 1), (report, 1), (completed, version + 1)] {
        if let Err(e) = db.write(resource, v, &stamp) {
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, &e.to_string());
        }
    }
    axum::Json(json!({"observation": format!("Observation/{observation_id}"), "report": format!("DiagnosticReport/{report_id}")}))
        .into_response()
}

pub(crate) async fn stats(State(sandbox): State<Sandbox>) -> Response {
    let Ok(db) = sandbox.state.db.read() else {
        return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
    };
    let mut counts = serde_json::Map::new();
    let mut types: Vec<&String> = db.types().collect();
    types.sort();
    for t in types {
        counts.insert(t.clone(), json!(db.count(t)));
    }
    axum::Json(json!({"resources": counts, "writes": db.writes})).into_response()
}

impl Sandbox {
    /// What a scheduler does in the EHR: a new version of the appointment with `status`
    /// (e.g. cancelled), whatever the personality lets apps write.
    pub fn set_appointment_status(&self, id: &str, status: &str) -> Result<(), SandboxError> {
        let mut db = self.state.db.write().map_err(|_| SandboxError::Journal("sandbox state is poisoned".into()))?;
        let current = db.latest("Appointment", id).ok_or_else(|| SandboxError::Seed(format!("no Appointment/{id}")))?;
        let mut next = current.as_ref().clone();
        next["status"] = json!(status);
        let version = db.version_count("Appointment", id) + 1;
        db.write(next, version, &wall_clock())?;
        Ok(())
    }
}
