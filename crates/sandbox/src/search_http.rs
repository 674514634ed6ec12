//! The FHIR search endpoint: filters and pages, and how each personality pages and what it
//! requires of a search (Epic's rules are in `epic_search.rs`).

use super::*;

/// A vendor's opaque paging parameter (`-pageContext`, `cursor`: the offset, base64url) as
/// the plain `_offset` the search runs on.
fn opaque_offset(params: &mut [(String, String)], name: &str) {
    for (k, v) in params.iter_mut().filter(|(k, _)| k == name) {
        *k = "_offset".into();
        let decoded =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v.as_bytes()).unwrap_or_default();
        *v = String::from_utf8(decoded).unwrap_or_default();
    }
}

/// The offset as a vendor's opaque paging token.
fn opaque_token(offset: usize) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, offset.to_string())
}

pub(crate) async fn search_type(
    State(sandbox): State<Sandbox>,
    Path(rtype): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    sandbox.delay().await;
    if let Some(r) = unknown_type(&rtype) {
        return r;
    }
    if let Some(fault) = sandbox.take_read_fault(&rtype) {
        return crate::strike(&fault).await;
    }
    let query = query.unwrap_or_default();
    let mut params: Vec<(String, String)> = match serde_urlencoded::from_str(&query) {
        Ok(p) => p,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", None, &format!("malformed query string: {e}")),
    };
    // §8.21: an Oracle-like server pages with `-pageContext` (here: the offset, opaque to clients).
    let oracle = sandbox.state.personality.quirks().context_paging;
    if oracle {
        params.retain(|(k, _)| k != "-pageDirection");
        opaque_offset(&mut params, "-pageContext");
    }
    let athena = sandbox.state.personality == Personality::Athena;
    if athena && let Err(response) = athena_params(&mut params) {
        return *response;
    }
    let epic = sandbox.state.personality == Personality::Epic;
    let mut ignored = Vec::new();
    let mut request = if epic {
        match epic_search::request(&sandbox, &rtype, &params) {
            Ok((request, dropped)) => {
                ignored = dropped;
                request
            }
            Err(response) => return *response,
        }
    } else {
        match search::parse(&params) {
            Ok(r) => r,
            Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", Some(&e.param), &e.message),
        }
    };
    let base = sandbox.base_url();
    let Ok(db) = sandbox.state.db.read() else {
        return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
    };
    if epic {
        request.count = request.count.min(1000);
    }
    let hits = match search::run(&db, &rtype, &request.filters) {
        Ok(h) => h,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, "not-supported", Some(&e.param), &e.message),
    };
    let total = hits.len();
    // Oracle-like: a later page starts with the last record of the page before (§8.21).
    let first = if oracle && request.offset > 0 { request.offset - 1 } else { request.offset };
    let mut page: Vec<Value> = hits
        .iter()
        .skip(first)
        .take(request.count + request.offset - first)
        .map(|r| {
            json!({"fullUrl": format!("{base}/{rtype}/{}", r["id"].as_str().unwrap_or_default()),
                   "resource": r.as_ref(), "search": {"mode": "match"}})
        })
        .collect();
    let link_for = |offset: usize| {
        let mut pairs: Vec<(String, String)> = request.filters.clone();
        pairs.push(("_count".into(), request.count.to_string()));
        if oracle {
            pairs.push(("-pageContext".into(), opaque_token(offset)));
            pairs.push(("-pageDirection".into(), "NEXT".into()));
        } else if athena {
            pairs.insert(0, ("ah-practice".into(), athena_practice(ATHENA_PRACTICE)));
            pairs.push(("cursor".into(), opaque_token(offset)));
        } else {
            pairs.push(("_offset".into(), offset.to_string()));
        }
        format!("{base}/{rtype}?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
    };
    let mut links = vec![json!({"relation": "self", "url": link_for(request.offset)})];
    let more = request.offset + request.count < total && request.count > 0;
    if more && epic {
        links.push(json!({"relation": "next", "url": epic_search::next_link(&sandbox, &base, &rtype, &request)}));
    } else if more {
        links.push(json!({"relation": "next", "url": link_for(request.offset + request.count)}));
    }
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links});
    if epic {
        // §8.10: `total` is the page's size; no results is an OperationOutcome entry (4101);
        // §8.11: parameters it does not know are ignored, with an informational 59100.
        bundle["total"] = json!(page.len());
        let mut notes: Vec<Value> = ignored
            .iter()
            .map(|p| {
                epic_search::outcome_entry(
                    "information",
                    "59100",
                    &format!("the parameter {p} is not supported and was ignored"),
                )
            })
            .collect();
        if page.is_empty() {
            notes.push(epic_search::outcome_entry("warning", "4101", "Resource request returns no results."));
        }
        page.extend(notes);
    }
    if oracle {
        // Oracle mostly leaves `total` out.
        if let Some(b) = bundle.as_object_mut() {
            b.remove("total");
        }
    }
    if !page.is_empty() {
        bundle["entry"] = Value::Array(page);
    }
    fhir(StatusCode::OK, &bundle)
}

/// §8.24: an athena-like server searches within a practice (`ah-practice`), pages by `cursor`,
/// and takes `_lastUpdated` to the day only. Leaves the parameters as the search runs them.
fn athena_params(params: &mut Vec<(String, String)>) -> Result<(), Box<Response>> {
    let refuse = |status, code, element, message| Err(Box::new(outcome(status, code, Some(element), message)));
    match params.iter().find(|(k, _)| k == "ah-practice") {
        None => return refuse(StatusCode::BAD_REQUEST, "required", "ah-practice", "ah-practice is required"),
        Some((_, v)) if *v != athena_practice(ATHENA_PRACTICE) => {
            return refuse(StatusCode::FORBIDDEN, "forbidden", "ah-practice", "the practice is not accessible");
        }
        Some(_) => {}
    }
    params.retain(|(k, _)| k != "ah-practice");
    if params.iter().any(|(k, v)| k == "_lastUpdated" && v.contains('T')) {
        return refuse(StatusCode::BAD_REQUEST, "value", "_lastUpdated", "_lastUpdated takes a date only (YYYY-MM-DD)");
    }
    opaque_offset(params, "cursor");
    Ok(())
}
