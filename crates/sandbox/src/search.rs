//! FHIR search over the sandbox store: `_id`, `_lastUpdated`, `identifier`, `patient`/`subject`,
//! `date`, `status`, `appointment`, `encounter`, `code`, `category`, `actor`, with `_count` paging.
//! An unknown parameter is refused (400) rather than silently ignored, so a client bug shows.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::db::{Db, identifier_tokens};

#[derive(Debug, Clone, PartialEq)]
pub struct SearchError {
    pub param: String,
    pub message: String,
}

fn err(param: &str, message: impl Into<String>) -> SearchError {
    SearchError { param: param.to_owned(), message: message.into() }
}

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

pub struct SearchRequest {
    pub filters: Vec<(String, String)>,
    pub count: usize,
    pub offset: usize,
}

/// Parameters that only shape the result, not the match.
const RESULT_PARAMS: &[&str] = &["_count", "_offset", "_format", "_pretty"];

pub fn parse(params: &[(String, String)]) -> Result<SearchRequest, SearchError> {
    let mut req = SearchRequest { filters: Vec::new(), count: DEFAULT_COUNT, offset: 0 };
    for (name, value) in params {
        match name.as_str() {
            "_count" => {
                req.count = value
                    .parse::<usize>()
                    .map_err(|_| err("_count", format!("{value:?} is not a non-negative integer")))?
                    .min(MAX_COUNT)
            }
            "_offset" => {
                req.offset =
                    value.parse().map_err(|_| err("_offset", format!("{value:?} is not a non-negative integer")))?
            }
            n if RESULT_PARAMS.contains(&n) => {}
            _ => req.filters.push((name.clone(), value.clone())),
        }
    }
    Ok(req)
}

/// Runs the filters over every current resource of `rtype`; results are in `_lastUpdated`, id order.
pub fn run<'a>(db: &'a Db, rtype: &str, filters: &[(String, String)]) -> Result<Vec<&'a Arc<Value>>, SearchError> {
    let mut matchers = Vec::with_capacity(filters.len());
    for (name, value) in filters {
        matchers.push(matcher(rtype, name, value)?);
    }
    // identifier is indexed: start from the index when present.
    let candidates: Vec<&Arc<Value>> = match filters.iter().find(|(n, _)| n == "identifier") {
        Some((_, value)) if !value.contains(',') => db.by_identifier(rtype, value),
        _ => db.all(rtype).collect(),
    };
    let mut hits: Vec<&Arc<Value>> = candidates.into_iter().filter(|r| matchers.iter().all(|m| m(r))).collect();
    hits.sort_by(|a, b| {
        let key = |r: &Value| {
            (
                r.pointer("/meta/lastUpdated").and_then(Value::as_str).map(str::to_owned),
                r["id"].as_str().map(str::to_owned),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(hits)
}

/// Whether this server can search `rtype` by `name` (with this value).
pub fn supported(rtype: &str, name: &str, value: &str) -> bool {
    matcher(rtype, name, value).is_ok()
}

type Matcher = Box<dyn Fn(&Value) -> bool>;

fn matcher(rtype: &str, name: &str, value: &str) -> Result<Matcher, SearchError> {
    let (base, modifier) = name.split_once(':').map_or((name, None), |(b, m)| (b, Some(m)));
    if let Some(m) = modifier {
        return Err(err(name, format!("modifier :{m} is not supported by this server")));
    }
    let alternatives: Vec<String> = value.split(',').map(str::to_owned).collect();
    let m: Matcher = match base {
        "_id" => Box::new(move |r| alternatives.iter().any(|a| r["id"].as_str() == Some(a))),
        "_lastUpdated" => {
            let test = date_test(name, value)?;
            Box::new(move |r| r.pointer("/meta/lastUpdated").and_then(Value::as_str).is_some_and(&test))
        }
        "identifier" => Box::new(move |r| {
            let tokens = identifier_tokens(r);
            alternatives.iter().any(|a| tokens.iter().any(|t| t == a))
        }),
        "status" => Box::new(move |r| alternatives.iter().any(|a| r["status"].as_str() == Some(a))),
        "patient" | "subject" => {
            let paths: &[&str] = match rtype {
                "Appointment" => &["/participant/*/actor"],
                "Patient" => return Err(err(name, "Patient has no patient parameter; use _id")),
                _ => &["/subject", "/patient"],
            };
            let wanted: Vec<String> = alternatives.iter().map(|a| normalize_ref(a, "Patient")).collect();
            reference_matcher(paths, wanted)
        }
        "actor" | "practitioner" if rtype == "Appointment" => {
            let wanted: Vec<String> = alternatives.iter().map(|a| normalize_ref(a, "Practitioner")).collect();
            reference_matcher(&["/participant/*/actor"], wanted)
        }
        "appointment" if rtype == "Encounter" => {
            let wanted = alternatives.iter().map(|a| normalize_ref(a, "Appointment")).collect();
            reference_matcher(&["/appointment/*"], wanted)
        }
        "encounter"
            if matches!(
                rtype,
                "Observation" | "Condition" | "Procedure" | "DiagnosticReport" | "DocumentReference"
            ) =>
        {
            let wanted = alternatives.iter().map(|a| normalize_ref(a, "Encounter")).collect();
            reference_matcher(&["/encounter", "/context/encounter/*"], wanted)
        }
        "target" if rtype == "Provenance" => {
            let wanted = alternatives.iter().map(|a| a.to_owned()).collect();
            reference_matcher(&["/target/*"], wanted)
        }
        "based-on" => {
            let wanted = alternatives.iter().map(|a| normalize_ref(a, "ServiceRequest")).collect();
            reference_matcher(&["/basedOn/*"], wanted)
        }
        "code" | "category" => {
            let field = if base == "code" { "code" } else { "category" };
            Box::new(move |r| {
                let concepts: Vec<&Value> = match &r[field] {
                    Value::Array(list) => list.iter().collect(),
                    other => vec![other],
                };
                concepts.iter().flat_map(|c| c["coding"].as_array().into_iter().flatten()).any(|coding| {
                    alternatives.iter().any(|a| match a.split_once('|') {
                        Some((system, code)) => {
                            coding["system"].as_str() == Some(system) && coding["code"].as_str() == Some(code)
                        }
                        None => coding["code"].as_str() == Some(a),
                    })
                })
            })
        }
        "date" => {
            let path: &'static str = match rtype {
                "Appointment" => "/start",
                "Encounter" => "/period/start",
                "Observation" => "/effectiveDateTime",
                "DocumentReference" => "/date",
                "Condition" => "/recordedDate",
                _ => return Err(err(name, format!("date is not a search parameter of {rtype} on this server"))),
            };
            let test = date_test(name, value)?;
            Box::new(move |r| r.pointer(path).and_then(Value::as_str).is_some_and(&test))
        }
        _ => return Err(err(name, format!("unknown search parameter {name:?} for {rtype}"))),
    };
    Ok(m)
}

fn normalize_ref(value: &str, default_type: &str) -> String {
    if value.contains('/') { value.to_owned() } else { format!("{default_type}/{value}") }
}

fn reference_matcher(paths: &'static [&'static str], wanted: Vec<String>) -> Matcher {
    Box::new(move |r| {
        paths.iter().any(|path| {
            references_at(r, path).iter().any(|found| {
                wanted.iter().any(|w| {
                    found.ends_with(w.as_str())
                        && (found.len() == w.len() || found[..found.len() - w.len()].ends_with('/'))
                })
            })
        })
    })
}

/// The `reference` strings at a path where `*` walks an array.
fn references_at<'a>(value: &'a Value, path: &str) -> Vec<&'a str> {
    let mut nodes = vec![value];
    for part in path.split('/').filter(|p| !p.is_empty()) {
        nodes = nodes
            .into_iter()
            .flat_map(|n| match part {
                "*" => n.as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default(),
                key => n.get(key).into_iter().collect(),
            })
            .collect();
    }
    nodes.into_iter().filter_map(|n| n.get("reference").and_then(Value::as_str)).collect()
}

/// A FHIR date search value (`ge2026-11-26`, `lt2026-11-26T12:00:00Z`) as a test on a resource's
/// date/dateTime/instant text. The value's precision sets the range it stands for.
type DateTest = Box<dyn Fn(&str) -> bool>;

fn date_test(name: &str, raw: &str) -> Result<DateTest, SearchError> {
    let prefixes = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"];
    let (prefix, text) = match raw.get(..2) {
        Some(p) if prefixes.contains(&p) => (p.to_owned(), &raw[2..]),
        _ => ("eq".to_owned(), raw),
    };
    let (lo, hi) = date_range(text).ok_or_else(|| err(name, format!("{text:?} is not a FHIR date or dateTime")))?;
    Ok(Box::new(move |found: &str| {
        let Some((flo, fhi)) = date_range(found) else { return false };
        match prefix.as_str() {
            "eq" => flo >= lo && fhi <= hi,
            "ne" => !(flo >= lo && fhi <= hi),
            "gt" | "sa" => flo >= hi,
            "lt" | "eb" => fhi <= lo,
            "ge" => fhi > lo,
            "le" => flo < hi,
            _ => false,
        }
    }))
}

/// The half-open instant range a date, partial date or dateTime denotes.
fn date_range(text: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        let at = at.with_timezone(&Utc);
        // The range is as wide as the written precision: a second, or a millisecond.
        let width = if text.contains('.') { chrono::Duration::milliseconds(1) } else { chrono::Duration::seconds(1) };
        return Some((at, at + width));
    }
    let day = |y: i32, m: u32, d: u32| {
        NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
    };
    let parts: Vec<&str> = text.split('-').collect();
    match parts.as_slice() {
        [y] => {
            let y: i32 = y.parse().ok()?;
            Some((day(y, 1, 1)?, day(y + 1, 1, 1)?))
        }
        [y, m] => {
            let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
            let next = if m == 12 { day(y + 1, 1, 1)? } else { day(y, m + 1, 1)? };
            Some((day(y, m, 1)?, next))
        }
        [y, m, d] => {
            let start = day(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
            Some((start, start + chrono::Duration::days(1)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_prefixes_follow_the_value_precision() {
        let on_day = date_test("date", "2026-11-26").unwrap();
        assert!(on_day("2026-11-26T09:30:00Z"));
        assert!(!on_day("2026-11-27T00:00:00Z"));
        let after = date_test("date", "ge2026-11-26T10:00:00Z").unwrap();
        assert!(after("2026-11-26T10:00:00Z"));
        assert!(!after("2026-11-26T09:59:59Z"));
        assert!(date_test("date", "26/11/2026").is_err());
    }
}
