//! FHIR writes: create (with conditional create where the personality offers it), update
//! and JSON Patch with `If-Match`, each checked, refused or kept as the personality would.

use super::*;

fn parse_body(rtype: &str, body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice::<Value>(body).map_err(|e| {
        Box::new(outcome(
            StatusCode::BAD_REQUEST,
            "structure",
            Some(rtype),
            &format!("the body is not valid JSON: {e}"),
        ))
    })
}

fn wants_minimal(headers: &HeaderMap) -> bool {
    headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("return=minimal"))
}

/// What create and update share before the write: latency, the type check, an injected fault
/// that strikes before anything is kept, and the body. Returns the fault to strike after it.
async fn before_write(
    sandbox: &Sandbox,
    method: &Method,
    rtype: &str,
    body: &Bytes,
) -> Result<(Option<Fault>, Value), Response> {
    sandbox.delay().await;
    if let Some(r) = unknown_type(rtype) {
        return Err(r);
    }
    let fault = sandbox.take_fault(method, rtype);
    if let Some(f) = fault.as_ref().filter(|f| !f.after_commit) {
        return Err(strike(f).await);
    }
    let mut resource = parse_body(rtype, body).map_err(|r| *r)?;
    if let Some(r) = sandbox.state.personality.refuse_write(method, rtype, &resource) {
        let mut issue = json!({"severity": "error", "code": r.code, "diagnostics": r.message});
        if let Some(expression) = r.expression {
            issue["expression"] = json!([expression]);
        }
        if let Some(code) = r.vendor_code {
            issue["details"] =
                json!({"coding": [{"system": personality::EPIC_ERRORS, "code": code}], "text": r.message});
        }
        return Err(fhir(r.status, &json!({"resourceType": "OperationOutcome", "issue": [issue]})));
    }
    if *method == Method::POST {
        sandbox.record_accepted_create(rtype, &resource);
    }
    sandbox.state.personality.keep(rtype, &mut resource);
    if !sandbox.keeps_client_identifiers()
        && rtype != "Patient"
        && let Some(fields) = resource.as_object_mut()
    {
        fields.remove("identifier");
    }
    Ok((fault, resource))
}

/// The reply to a kept write: the after-commit fault if one is due, else the resource (or
/// nothing, for `Prefer: return=minimal`) with its version headers.
async fn after_write(
    sandbox: &Sandbox,
    fault: Option<Fault>,
    headers: &HeaderMap,
    status: StatusCode,
    stored: &Value,
) -> Response {
    if let Some(f) = fault {
        return strike(&f).await;
    }
    let response = if wants_minimal(headers) { status.into_response() } else { fhir(status, stored) };
    with_version_headers(response, &sandbox.base_url(), stored)
}

pub(crate) async fn create(
    State(sandbox): State<Sandbox>,
    Path(rtype): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, mut resource) = match before_write(&sandbox, &Method::POST, &rtype, &body).await {
        Ok(ready) => ready,
        Err(response) => return response,
    };
    let stored = {
        let Ok(mut db) = sandbox.state.db.write() else {
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
        };
        if let Err(refusal) = validate::check(&db, &rtype, &resource) {
            return refused(&refusal);
        }
        // §8.26: conditional create on a plain server (If-None-Exist: 0 → create, 1 → that one,
        // more → 412); Epic- and Oracle-like servers ignore the header (§8.9).
        let condition = headers.get("if-none-exist").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(query) = condition.filter(|_| sandbox.state.personality == Personality::Generic) {
            let params: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap_or_default();
            match search::run(&db, &rtype, &params) {
                Ok(found) if found.len() == 1 => {
                    let existing = found[0].clone();
                    drop(db);
                    return with_version_headers(fhir(StatusCode::OK, &existing), &sandbox.base_url(), &existing);
                }
                Ok(found) if found.len() > 1 => {
                    return outcome(
                        StatusCode::PRECONDITION_FAILED,
                        "duplicate",
                        None,
                        &format!("If-None-Exist matched {} resources", found.len()),
                    );
                }
                Ok(_) => {}
                Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", Some(&e.param), &e.message),
            }
        }
        // The server assigns ids on create; a client-sent id is ignored, as FHIR says.
        resource["id"] = Value::String(db.mint_id());
        match db.write(resource, 1, &wall_clock()) {
            Ok(stored) => stored,
            Err(e) => return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, &e.to_string()),
        }
    };
    if let Some(f) = fault {
        return strike(&f).await;
    }
    let shape = sandbox.state.personality.create_reply();
    let asked =
        headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("return=representation"));
    let body = !shape.never_body && !wants_minimal(&headers) && (asked || !shape.body_only_when_asked);
    let response = if body { fhir(StatusCode::CREATED, &stored) } else { StatusCode::CREATED.into_response() };
    let mut response = with_version_headers(response, &sandbox.base_url(), &stored);
    if !shape.etag {
        response.headers_mut().remove(header::ETAG);
    }
    if !shape.absolute_location {
        let relative = format!(
            "{}/{}/_history/{}",
            stored["resourceType"].as_str().unwrap_or_default(),
            stored["id"].as_str().unwrap_or_default(),
            stored.pointer("/meta/versionId").and_then(Value::as_str).unwrap_or("1")
        );
        if let Ok(location) = HeaderValue::from_str(&relative) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

fn refused(refusal: &validate::Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    outcome(status, refusal.code, Some(&refusal.expression), &refusal.message)
}

/// JSON Patch (`replace`/`add` of existing paths), with `If-Match` as on update. An Oracle-like
/// server takes it on listed paths only (§8.18: Appointment `/status`, not Encounter `/status`).
pub(crate) async fn patch(
    State(sandbox): State<Sandbox>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sandbox.delay().await;
    if let Some(r) = unknown_type(&rtype) {
        return r;
    }
    let Ok(operations) = serde_json::from_slice::<Vec<Value>>(&body) else {
        return outcome(StatusCode::BAD_REQUEST, "invalid", None, "the body must be a JSON Patch array");
    };
    let Ok(mut db) = sandbox.state.db.write() else {
        return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
    };
    let current = db.version_count(&rtype, &id);
    let Some(existing) = db.latest(&rtype, &id).cloned() else {
        return outcome(StatusCode::NOT_FOUND, "not-found", None, &format!("{rtype}/{id} does not exist"));
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    if if_match.is_none() && sandbox.state.personality.update_needs_if_match() {
        return outcome(StatusCode::PRECONDITION_FAILED, "conflict", None, "a patch needs If-Match");
    }
    if let Some(expected) = if_match {
        let expected = expected.trim().trim_start_matches("W/").trim_matches('"');
        if expected != current.to_string() {
            return outcome(sandbox.state.personality.stale_status(), "conflict", None, "stale If-Match");
        }
    }
    let mut resource = existing.as_ref().clone();
    for op in &operations {
        let (Some(kind), Some(path)) = (op["op"].as_str(), op["path"].as_str()) else {
            return outcome(StatusCode::BAD_REQUEST, "invalid", None, "each operation needs op and path");
        };
        if let Some(r) = sandbox.state.personality.refuse_patch(&rtype, path, &op["value"]) {
            return outcome(r.status, r.code, r.expression, &r.message);
        }
        if !matches!(kind, "replace" | "add") {
            return outcome(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not-supported",
                None,
                &format!("op {kind} is not supported"),
            );
        }
        let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
        let Some(Value::Object(target)) = resource.pointer_mut(parent) else {
            return outcome(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                None,
                &format!("{path} is not in the resource"),
            );
        };
        target.insert(key.to_owned(), op["value"].clone());
    }
    if let Err(refusal) = validate::check(&db, &rtype, &resource) {
        return refused(&refusal);
    }
    match db.write(resource, current + 1, &wall_clock()) {
        Ok(stored) => {
            let stored = stored.as_ref().clone();
            drop(db);
            with_version_headers(fhir(StatusCode::OK, &stored), &sandbox.base_url(), &stored)
        }
        Err(e) => outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, &e.to_string()),
    }
}

pub(crate) async fn update(
    State(sandbox): State<Sandbox>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, resource) = match before_write(&sandbox, &Method::PUT, &rtype, &body).await {
        Ok(ready) => ready,
        Err(response) => return response,
    };
    if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("id"),
            &format!("the body's id must be {id:?}, as in the URL"),
        );
    }
    let stored = {
        let Ok(mut db) = sandbox.state.db.write() else {
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
        };
        let current = db.version_count(&rtype, &id);
        if current == 0 {
            return outcome(
                StatusCode::NOT_FOUND,
                "not-found",
                None,
                &format!("{rtype}/{id} does not exist; this server assigns ids on create"),
            );
        }
        let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
        if if_match.is_none() && sandbox.state.personality.update_needs_if_match() {
            return outcome(StatusCode::PRECONDITION_FAILED, "conflict", None, "an update needs If-Match");
        }
        if let Some(expected) = if_match {
            let expected = expected.trim().trim_start_matches("W/").trim_matches('"');
            if expected != current.to_string() {
                return outcome(
                    sandbox.state.personality.stale_status(),
                    "conflict",
                    None,
                    &format!("If-Match names version {expected} but {rtype}/{id} is at version {current}"),
                );
            }
        }
        if let Err(refusal) = validate::check(&db, &rtype, &resource) {
            return refused(&refusal);
        }
        match db.write(resource, current + 1, &wall_clock()) {
            Ok(stored) => stored,
            Err(e) => return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, &e.to_string()),
        }
    };
    after_write(&sandbox, fault, &headers, StatusCode::OK, &stored).await
}
