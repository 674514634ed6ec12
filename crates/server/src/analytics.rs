//! Virtual-care analytics: the KPI report as JSON and CSV, the visits behind a figure, the
//! dashboard with its server-drawn charts and drill-down (the clinicians' survey is in
//! `survey.rs`). Every figure comes from `telechart_analytics::report` after a refresh of the facts,
//! so the page, the API, the CSV and `/metrics` agree. A clinician sees their own visits only.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Serialize;
use telechart_analytics::kpi::{self, DEFINITIONS, Unit};
use telechart_analytics::{AnalyticsError, FilterInput, Report};
use telechart_policy::Permission;
use telechart_store::{AuditEntry, FactDimension, FactFilter, VisitFact};

use crate::auth::{Access, Caller, Routes};
use crate::{ApiError, AppState, charts};

/// Visits per drill-down page.
const PAGE: i64 = 50;

pub(crate) fn routes() -> Routes {
    use Permission::AnalyticsRead;
    Routes::new()
        .add(Method::GET, "/api/v1/analytics", Access::Requires(AnalyticsRead), api_report)
        .add(Method::GET, "/api/v1/analytics/kpis.csv", Access::Requires(AnalyticsRead), kpis_csv)
        .add(Method::GET, "/api/v1/analytics/visits", Access::Requires(AnalyticsRead), api_visits)
        .add(Method::GET, "/workspace/analytics", Access::Requires(AnalyticsRead), dashboard)
        .add(Method::GET, "/workspace/analytics/visits", Access::Requires(AnalyticsRead), drill_page)
}

fn analytics_error(e: AnalyticsError) -> ApiError {
    match e {
        AnalyticsError::Store(e) => ApiError::from(e),
        AnalyticsError::Invalid { field, message } => ApiError::invalid(field, message),
        AnalyticsError::UnknownFilter { field, .. } => ApiError::invalid(field, e.to_string()),
        AnalyticsError::UnknownKpi(_) => ApiError::invalid("kpi", e.to_string()),
        AnalyticsError::UnknownDrill(_) => ApiError::invalid("drill", e.to_string()),
        AnalyticsError::Csv(m) => ApiError::Internal(m),
    }
}

/// The query parameters a filter takes, and the drill-down's own.
const FILTER_PARAMS: [&str; 5] = ["from", "to", "connection", "clinician", "visitType"];

/// The filter of a query string: unknown parameters are refused by name.
fn filter_input(params: &BTreeMap<String, String>, extra: &[&str]) -> Result<FilterInput, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !FILTER_PARAMS.contains(&k.as_str()) && !extra.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            unknown.clone(),
            format!("unknown parameter {unknown:?}; known: {}", [&FILTER_PARAMS[..], extra].concat().join(", ")),
        ));
    }
    let get = |k: &str| params.get(k).cloned();
    Ok(FilterInput {
        from: get("from"),
        to: get("to"),
        connection: get("connection"),
        clinician: get("clinician"),
        visit_type: get("visitType"),
    })
}

/// The caller's own Practitioner when they may see only their own visits (a clinician).
async fn own_scope(state: &AppState, caller: &Caller) -> Result<Option<String>, ApiError> {
    if caller.role.allows(Permission::AnalyticsAll) {
        return Ok(None);
    }
    let linked = match caller.actor.strip_prefix("user:") {
        Some(user) => state.store.user(&caller.tenant_id, user).await?.and_then(|u| u.fhir_user),
        None => None,
    };
    // An account linked to no Practitioner has no visits of its own: empty figures, said so.
    Ok(Some(match linked {
        Some(p) if p.contains('/') => p,
        Some(p) => format!("Practitioner/{p}"),
        None => UNLINKED.to_owned(),
    }))
}

/// The clinician filter of an account linked to no Practitioner: matches no visit.
const UNLINKED: &str = "urn:telechart:no-linked-practitioner";

/// Refreshes the tenant's facts and resolves the filter, narrowed to the caller's scope.
async fn resolve(state: &AppState, caller: &Caller, input: &FilterInput) -> Result<FactFilter, ApiError> {
    let own = own_scope(state, caller).await?;
    let now = state.clock.now_ms();
    telechart_analytics::refresh(&state.store, &caller.tenant_id, now).await.map_err(analytics_error)?;
    let mut input = input.clone();
    if let Some(own) = own {
        match input.clinician.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            Some(asked) if asked != own => {
                return Err(ApiError::Forbidden("a clinician sees their own visits' figures only".into()));
            }
            _ => input.clinician = Some(own.clone()),
        }
        // A clinician with no visit yet gets empty figures, not an "unknown clinician" refusal.
        if !state.store.fact_dimension_has(&caller.tenant_id, FactDimension::Clinician, &own).await? {
            let mut filter = input.clone();
            filter.clinician = None;
            let mut resolved = filter.resolve(&state.store, &caller.tenant_id, now).await.map_err(analytics_error)?;
            resolved.clinician = Some(own);
            return Ok(resolved);
        }
    }
    input.resolve(&state.store, &caller.tenant_id, now).await.map_err(analytics_error)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportView<'a> {
    from: String,
    to: String,
    visits: i64,
    message: Option<&'static str>,
    kpis: Vec<KpiView<'a>>,
    by_day: &'a [telechart_analytics::Group],
    by_connection: &'a [telechart_analytics::Group],
    by_clinician: &'a [telechart_analytics::Group],
    by_visit_type: &'a [telechart_analytics::Group],
    accuracy_by_resource: &'a [telechart_analytics::Accuracy],
    claim_missing: &'a [(String, i64)],
    dead_letters: &'a [(String, String, i64)],
    break_glass: &'a [(String, i64)],
    nps_scores: &'a [i64; 11],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KpiView<'a> {
    id: &'static str,
    name: &'static str,
    group: &'static str,
    unit: Unit,
    value: Option<f64>,
    numerator: i64,
    denominator: i64,
    definition: Definition<'a>,
    drill: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Definition<'a> {
    numerator: &'a str,
    denominator: &'a str,
    time_base: &'a str,
    exclusions: &'a str,
}

fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default()
}

const UNLINKED_MESSAGE: &str = "This account is linked to no Practitioner, so it has no visits of its own to show; ask an administrator to link it.";
const NO_VISITS: &str = "No visits in this range for these filters: every figure is empty.";

fn report_view(report: &Report) -> ReportView<'_> {
    ReportView {
        from: iso(report.filter.from_ms),
        to: iso(report.filter.to_ms),
        visits: report.totals_visits,
        message: if report.filter.clinician.as_deref() == Some(UNLINKED) {
            Some(UNLINKED_MESSAGE)
        } else {
            report.is_empty().then_some(NO_VISITS)
        },
        kpis: DEFINITIONS
            .iter()
            .zip(&report.figures)
            .map(|(d, f)| KpiView {
                id: d.id,
                name: d.name,
                group: d.group,
                unit: d.unit,
                value: f.value,
                numerator: f.numerator,
                denominator: f.denominator,
                definition: Definition {
                    numerator: d.numerator,
                    denominator: d.denominator,
                    time_base: d.time_base,
                    exclusions: d.exclusions,
                },
                drill: d.drill,
            })
            .collect(),
        by_day: &report.by_day,
        by_connection: &report.by_connection,
        by_clinician: &report.by_clinician,
        by_visit_type: &report.by_visit_type,
        accuracy_by_resource: &report.accuracy_by_resource,
        claim_missing: &report.claim_missing,
        dead_letters: &report.dead_letters,
        break_glass: &report.break_glass,
        nps_scores: &report.nps_scores,
    }
}

async fn compute(state: &AppState, caller: &Caller, params: &BTreeMap<String, String>) -> Result<Report, ApiError> {
    let input = filter_input(params, &[])?;
    let filter = resolve(state, caller, &input).await?;
    telechart_analytics::report(&state.store, &filter).await.map_err(analytics_error)
}

/// `GET /api/v1/analytics`: every KPI with its definition, and the breakdowns.
async fn api_report(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let report = compute(&state, &caller, &params).await?;
    Ok(axum::Json(report_view(&report)).into_response())
}

fn csv_response(name: &str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `GET /api/v1/analytics/kpis.csv`.
async fn kpis_csv(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let report = compute(&state, &caller, &params).await?;
    let csv = telechart_analytics::export::kpis_csv(&report).map_err(analytics_error)?;
    Ok(csv_response("kpis.csv", csv))
}

struct Drill {
    filter: FactFilter,
    name: String,
    rows: Vec<VisitFact>,
    total: i64,
    offset: i64,
}

async fn drill(
    state: &AppState,
    caller: &Caller,
    params: &BTreeMap<String, String>,
    limit: i64,
) -> Result<Drill, ApiError> {
    let input = filter_input(params, &["drill", "offset", "format"])?;
    let name = params.get("drill").cloned().unwrap_or_else(|| "all".into());
    let predicate = kpi::predicate(&name).ok_or_else(|| analytics_error(AnalyticsError::UnknownDrill(name.clone())))?;
    let offset = match params.get("offset") {
        Some(o) => o
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| ApiError::invalid("offset", format!("{o:?} is not a whole number of visits to skip")))?,
        None => 0,
    };
    let filter = resolve(state, caller, &input).await?;
    let (rows, total) = state.store.fact_visits(&filter, &predicate, limit, offset).await?;
    // The list names visits (no patient): recorded, as every look at who was seen is.
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "analytics.visits.read".into(),
        entity_type: "analytics".into(),
        entity_id: name.clone(),
        phi: false,
        detail: format!("{} of {total} visits listed", rows.len()),
        purpose_of_use: Some("HOPERAT".into()),
        ..AuditEntry::default()
    };
    state.store.audit(&entry, state.clock.now_ms()).await?;
    Ok(Drill { filter, name, rows, total, offset })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VisitsView<'a> {
    drill: &'a str,
    total: i64,
    offset: i64,
    visits: &'a [VisitFact],
}

/// `GET /api/v1/analytics/visits?drill=…`: the visits behind a figure (`format=csv` for CSV,
/// all of them).
async fn api_visits(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let csv = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::invalid("format", format!("{other:?}: json or csv"))),
    };
    let d = drill(&state, &caller, &params, if csv { i64::MAX / 4 } else { PAGE }).await?;
    if csv {
        let body = telechart_analytics::export::visits_csv(&d.rows).map_err(analytics_error)?;
        return Ok(csv_response(&format!("visits-{}.csv", d.name.replace(':', "-")), body));
    }
    Ok(axum::Json(VisitsView { drill: &d.name, total: d.total, offset: d.offset, visits: &d.rows }).into_response())
}

// ——— The dashboard ———

fn format_figure(unit: Unit, value: Option<f64>) -> String {
    match value {
        None => "—".into(),
        Some(v) => match unit {
            Unit::Ratio => format!("{:.1} %", v * 100.0),
            Unit::Count => format!("{v:.0}"),
            Unit::Seconds if v >= 3600.0 => format!("{:.1} h", v / 3600.0),
            Unit::Seconds if v >= 60.0 => format!("{:.1} min", v / 60.0),
            Unit::Seconds => format!("{v:.1} s"),
            Unit::Words => format!("{v:.1} words"),
            Unit::Score => format!("{v:+.0}"),
        },
    }
}

/// The query string of a filter, for links that keep it.
fn filter_query(filter: &FactFilter, own: bool) -> Vec<(&'static str, String)> {
    let mut q = vec![("from", iso(filter.from_ms)), ("to", iso(filter.to_ms))];
    if let Some(c) = &filter.connection {
        q.push(("connection", c.clone()));
    }
    if !own && let Some(c) = &filter.clinician {
        q.push(("clinician", c.clone()));
    }
    if let Some(t) = &filter.visit_type {
        q.push(("visitType", t.clone()));
    }
    q
}

fn drill_href(filter: &FactFilter, own: bool, drill: &str) -> String {
    let mut q = filter_query(filter, own);
    q.push(("drill", drill.to_owned()));
    format!("/workspace/analytics/visits?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#1a1a1a;line-height:1.4}\
    .tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.75rem}\
    .tile{border:1px solid #8a8a8a;border-radius:.4rem;padding:.6rem}\
    .tile .value{font-size:1.6rem;font-weight:600;display:block}\
    .tile .of{color:#444;font-size:.9rem}\
    a{color:#0b4f8a}\
    table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #8a8a8a;padding:.2rem .5rem;text-align:left}\
    .message{border-left:.3rem solid #8a5a00;padding:.4rem .8rem;background:#fff7e6}\
    .error{border-left:.3rem solid #a00;padding:.4rem .8rem;background:#fdecec}\
    figure{margin:1rem 0;max-width:36rem}figure svg{max-width:100%;height:auto}\
    .charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(30rem,1fr));gap:1rem}\
    form label{margin-left:.75rem}details{font-size:.85rem;color:#333}";

struct Page<'a> {
    input: &'a FilterInput,
    report: Option<&'a Report>,
    error: Option<String>,
    own: bool,
    unlinked: bool,
    connections: Vec<String>,
    clinicians: Vec<String>,
    visit_types: Vec<String>,
}

fn shell(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    }
}

fn select(id: &str, label: &str, options: &[String], chosen: Option<&str>) -> Markup {
    html! {
        label for=(id) { (label) " " }
        select id=(id) name=(id) {
            option value="" selected[chosen.is_none_or(str::is_empty)] { "All" }
            @for o in options {
                option value=(o) selected[chosen == Some(o.as_str())] { (if o.is_empty() { "(none)" } else { o.as_str() }) }
            }
        }
    }
}

fn chart(id: &str, caption: &str, labels: &[String], values: &[f64], max: Option<f64>, shown: &[String]) -> Markup {
    html! {
        figure id=(id) {
            figcaption { (caption) }
            div role="img" aria-label={ (caption) ": " (if values.is_empty() { "no data".to_owned() } else {
                labels.iter().zip(shown).map(|(l, v)| format!("{l} {v}")).collect::<Vec<_>>().join(", ") }) } {
                (PreEscaped(charts::bars(values, max)))
            }
            table {
                caption { (caption) ", as a table" }
                thead { tr { th scope="col" { "" } th scope="col" { "Value" } } }
                tbody {
                    @if labels.is_empty() { tr { td colspan="2" { "no data" } } }
                    @for (l, v) in labels.iter().zip(shown) { tr { th scope="row" { (l) } td { (v) } } }
                }
            }
        }
    }
}

fn dashboard_markup(page: &Page<'_>) -> Markup {
    let percent = |f: &telechart_analytics::Figure| format_figure(Unit::Ratio, f.value);
    let body = html! {
        h1 { "Virtual care analytics" }
        form method="get" action="/workspace/analytics" id="filters" {
            label for="from" { "From " } input id="from" name="from" type="text" placeholder="YYYY-MM-DD" value=(page.input.from.clone().unwrap_or_default());
            label for="to" { "To " } input id="to" name="to" type="text" placeholder="YYYY-MM-DD" value=(page.input.to.clone().unwrap_or_default());
            (select("connection", "Connection", &page.connections, page.input.connection.as_deref()))
            @if !page.own { (select("clinician", "Clinician", &page.clinicians, page.input.clinician.as_deref())) }
            (select("visitType", "Visit type", &page.visit_types, page.input.visit_type.as_deref()))
            button type="submit" { "Apply" }
        }
        @if page.own { p id="own-scope" { "Your own visits." } }
        @if page.unlinked { p class="message" role="status" { (UNLINKED_MESSAGE) } }
        @if let Some(error) = &page.error { p class="error" role="alert" id="analytics-error" { (error) } }
        @let empty = Report::empty_figures();
        @let report = page.report;
        @if let Some(r) = report {
            p id="range" { "Visits opened from " (iso(r.filter.from_ms)) " to " (iso(r.filter.to_ms)) ": " strong id="visit-count" { (r.totals_visits) } }
            @if r.is_empty() { p class="message" role="status" id="analytics-empty" { (NO_VISITS) } }
        }
        @let groups: Vec<&str> = { let mut g: Vec<&str> = DEFINITIONS.iter().map(|d| d.group).collect(); g.dedup(); g };
        @for group in groups {
            section {
                h2 { (group) }
                div class="tiles" {
                    @for (i, d) in DEFINITIONS.iter().enumerate().filter(|(_, d)| d.group == group) {
                        @let f = report.and_then(|r| r.figures.get(i)).unwrap_or(&empty[i]);
                        div class="tile" id={ "kpi-" (d.id) } data-value=(f.value.map(telechart_analytics::export::format_value).unwrap_or_default()) {
                            span class="name" { (d.name) }
                            @match (d.drill, report) {
                                (Some(drill), Some(r)) => {
                                    a class="value" href=(drill_href(&r.filter, page.own, drill)) { (format_figure(d.unit, f.value)) }
                                }
                                _ => { span class="value" { (format_figure(d.unit, f.value)) } }
                            }
                            @if f.denominator > 0 && matches!(d.unit, Unit::Ratio) {
                                span class="of" { (f.numerator) " of " (f.denominator) }
                            } @else if f.denominator > 0 {
                                span class="of" { "over " (f.denominator) }
                            }
                            details { summary { "Definition" }
                                p { "Numerator: " (d.numerator) } p { "Denominator: " (d.denominator) }
                                p { "Time base: " (d.time_base) } p { "Excluded: " (d.exclusions) }
                            }
                        }
                    }
                }
            }
        }
        @let by_day = report.map(|r| r.by_day.as_slice()).unwrap_or_default();
        @let by_connection = report.map(|r| r.by_connection.as_slice()).unwrap_or_default();
        @let missing = report.map(|r| r.claim_missing.as_slice()).unwrap_or_default();
        @let nps = report.map(|r| r.nps_scores).unwrap_or_default();
        section {
            h2 { "Charts" }
            div class="charts" {
            (chart("chart-visits-by-day", "Visits per day",
                &by_day.iter().map(|g| g.key.clone()).collect::<Vec<_>>(),
                &by_day.iter().map(|g| g.totals.visits as f64).collect::<Vec<_>>(), None,
                &by_day.iter().map(|g| g.totals.visits.to_string()).collect::<Vec<_>>()))
            (chart("chart-auto-logged-by-connection", "Auto-logged share by EHR connection",
                &by_connection.iter().map(|g| g.key.clone()).collect::<Vec<_>>(),
                &by_connection.iter().map(|g| g.totals.auto_logged.value.unwrap_or(0.0)).collect::<Vec<_>>(), Some(1.0),
                &by_connection.iter().map(|g| percent(&g.totals.auto_logged)).collect::<Vec<_>>()))
            (chart("chart-claim-missing", "Claim items most often missing (finished visits)",
                &missing.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
                &missing.iter().map(|(_, n)| *n as f64).collect::<Vec<_>>(), None,
                &missing.iter().map(|(_, n)| n.to_string()).collect::<Vec<_>>()))
            (chart("chart-nps", "Clinician survey scores, 0 to 10",
                &(0..=10).map(|s| s.to_string()).collect::<Vec<_>>(),
                &nps.iter().map(|n| *n as f64).collect::<Vec<_>>(), None,
                &nps.iter().map(|n| n.to_string()).collect::<Vec<_>>()))
            }
        }
        @if let Some(r) = report {
            section {
                h2 { "By EHR connection" }
                (group_table("by-connection", "Connection", &r.by_connection))
                @if !page.own { h2 { "By clinician" } (group_table("by-clinician", "Clinician", &r.by_clinician)) }
                h2 { "By visit type" }
                (group_table("by-visit-type", "Visit type", &r.by_visit_type))
                h2 { "Data accuracy by connection and resource type" }
                table id="accuracy-by-resource" {
                    thead { tr {
                        th scope="col" { "Connection" } th scope="col" { "Resource type" }
                        th scope="col" { "Fields kept of sent" } th scope="col" { "Data accuracy" }
                    } }
                    tbody {
                        @if r.accuracy_by_resource.is_empty() { tr { td colspan="4" { "nothing read back" } } }
                        @for a in &r.accuracy_by_resource {
                            tr {
                                th scope="row" { (a.connection) } td { (a.resource_type) }
                                td { (a.figure.numerator) " of " (a.figure.denominator) }
                                td { (format_figure(Unit::Ratio, a.figure.value)) }
                            }
                        }
                    }
                }
                h2 { "Claim items missing" }
                table id="claim-missing" {
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Finished visits failing it" } } }
                    tbody {
                        @if r.claim_missing.is_empty() { tr { td colspan="2" { "none" } } }
                        @for (check, n) in &r.claim_missing {
                            tr { th scope="row" { (check) } td { a href=(drill_href(&r.filter, page.own, &format!("claim-missing:{check}"))) { (n) } } }
                        }
                    }
                }
                h2 { "Dead letters now, by reason" }
                table id="dead-letters-by-reason" {
                    thead { tr { th scope="col" { "Resource" } th scope="col" { "Reason" } th scope="col" { "Count" } } }
                    tbody {
                        @if r.dead_letters.is_empty() { tr { td colspan="3" { "none" } } }
                        @for (resource, reason, n) in &r.dead_letters { tr { td { (resource) } td { (reason) } td { (n) } } }
                    }
                }
                p { a href="/api/v1/analytics/kpis.csv" { "Download the KPIs as CSV" } }
            }
        }
    };
    shell("Virtual care analytics", body)
}

fn group_table(id: &str, label: &str, groups: &[telechart_analytics::Group]) -> Markup {
    let percent = |f: &telechart_analytics::Figure| format_figure(Unit::Ratio, f.value);
    html! {
        table id=(id) {
            thead { tr {
                th scope="col" { (label) } th scope="col" { "Visits" } th scope="col" { "Finished" }
                th scope="col" { "Auto-logged" } th scope="col" { "Clean-claim ready" } th scope="col" { "Data accuracy" }
            } }
            tbody {
                @if groups.is_empty() { tr { td colspan="6" { "no visits" } } }
                @for g in groups {
                    tr {
                        th scope="row" { (if g.key.is_empty() { "(none)" } else { g.key.as_str() }) }
                        td { (g.totals.visits) } td { (g.totals.finished) }
                        td { (percent(&g.totals.auto_logged)) } td { (percent(&g.totals.clean_claim)) }
                        td { (percent(&g.totals.data_accuracy)) }
                    }
                }
            }
        }
    }
}

trait EmptyFigures {
    fn empty_figures() -> Vec<telechart_analytics::Figure>;
}

impl EmptyFigures for Report {
    /// What a tile shows when the filter was refused: no value.
    fn empty_figures() -> Vec<telechart_analytics::Figure> {
        DEFINITIONS
            .iter()
            .map(|d| telechart_analytics::Figure { id: d.id, value: None, numerator: 0, denominator: 0 })
            .collect()
    }
}

/// No script at all; the page's own inline style; the charts are inline SVG.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_SECURITY_POLICY, CSP)], axum::response::Html(markup.into_string())).into_response()
}

/// `GET /workspace/analytics`: a refused filter shows its reason and empty charts (422); a
/// range without visits says so (200).
async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let scope = own_scope(&state, &caller).await?;
    let own = scope.is_some();
    let input = filter_input(&params, &[]).unwrap_or_default();
    let outcome = match filter_input(&params, &[]) {
        Err(e) => Err(e),
        Ok(_) => compute(&state, &caller, &params).await,
    };
    let (report, error, status) = match outcome {
        Ok(report) => (Some(report), None, StatusCode::OK),
        Err(ApiError::Invalid { message, field }) => {
            (None, Some(field.map(|f| format!("{f}: {message}")).unwrap_or(message)), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(other) => return Err(other),
    };
    let values = |d| {
        let store = &state.store;
        let tenant = caller.tenant_id.clone();
        async move { store.fact_dimension_values(&tenant, d).await }
    };
    let page = Page {
        input: &input,
        report: report.as_ref(),
        error,
        own,
        unlinked: scope.as_deref() == Some(UNLINKED),
        connections: values(FactDimension::Connection).await?,
        clinicians: if own { Vec::new() } else { values(FactDimension::Clinician).await? },
        visit_types: values(FactDimension::VisitType).await?,
    };
    Ok(html_response(status, dashboard_markup(&page)))
}

/// `GET /workspace/analytics/visits?drill=…`: the visits behind a figure, 50 a page.
async fn drill_page(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let own = own_scope(&state, &caller).await?.is_some();
    let d = match drill(&state, &caller, &params, PAGE).await {
        Ok(d) => d,
        Err(ApiError::Invalid { message, field }) => {
            let body = html! {
                h1 { "Visits behind a figure" }
                p class="error" role="alert" id="analytics-error" { (field.map(|f| format!("{f}: {message}")).unwrap_or(message)) }
                p { a href="/workspace/analytics" { "Back to the dashboard" } }
            };
            return Ok(html_response(StatusCode::UNPROCESSABLE_ENTITY, shell("Visits behind a figure", body)));
        }
        Err(e) => return Err(e),
    };
    let when = |ms: Option<i64>| ms.map(iso).unwrap_or_else(|| "—".into());
    let mut next = filter_query(&d.filter, own);
    next.push(("drill", d.name.clone()));
    next.push(("offset", (d.offset + PAGE).to_string()));
    let back = format!(
        "/workspace/analytics?{}",
        serde_urlencoded::to_string(filter_query(&d.filter, own)).unwrap_or_default()
    );
    let body = html! {
        h1 { "Visits behind a figure" }
        p id="drill-summary" { strong { (d.total) } " visits match “" (d.name) "” from " (iso(d.filter.from_ms)) " to " (iso(d.filter.to_ms)) "." }
        p { a href=(back) { "Back to the dashboard" } }
        table id="drill-visits" {
            thead { tr {
                th scope="col" { "Visit" } th scope="col" { "Opened" } th scope="col" { "State" } th scope="col" { "Connection" }
                th scope="col" { "Clinician" } th scope="col" { "Delivered" } th scope="col" { "Auto-logged" }
                th scope="col" { "Claim missing" } th scope="col" { "Telehealth consent" } th scope="col" { "Note signed" }
            } }
            tbody {
                @if d.rows.is_empty() { tr { td colspan="10" { "no visits" } } }
                @for v in &d.rows {
                    tr class="drill-visit" {
                        th scope="row" { a href={ "/workspace/visits/" (v.visit_id) } { (v.visit_id) } }
                        td { (iso(v.started_at)) } td { (v.state) } td { (v.connection_id) } td { (v.clinician) }
                        td { (v.delivered) " / " (v.deliveries) } td { (if v.auto_logged == 1 { "yes" } else { "no" }) }
                        td { (if v.claim_missing.is_empty() { "—" } else { v.claim_missing.as_str() }) }
                        td { (v.consent_telehealth) } td { (when(v.note_signed_at)) }
                    }
                }
            }
        }
        @if d.offset + PAGE < d.total {
            p { a href={ "/workspace/analytics/visits?" (serde_urlencoded::to_string(&next).unwrap_or_default()) } { "Next " (PAGE) } }
        }
    };
    Ok(html_response(StatusCode::OK, shell("Visits behind a figure", body)))
}

/// The `/metrics` block of KPIs: each tenant's report over the last 24 hours, after a refresh.
pub(crate) async fn metrics_block(state: &AppState, tenants: &[String]) -> Result<String, ApiError> {
    let now = state.clock.now_ms();
    let mut reports = Vec::new();
    for tenant in tenants {
        telechart_analytics::refresh(&state.store, tenant, now).await.map_err(analytics_error)?;
        let filter = FilterInput::default().resolve(&state.store, tenant, now).await.map_err(analytics_error)?;
        reports.push((
            tenant.as_str(),
            telechart_analytics::report(&state.store, &filter).await.map_err(analytics_error)?,
        ));
    }
    let refs: Vec<(&str, &Report)> = reports.iter().map(|(t, r)| (*t, r)).collect();
    Ok(telechart_analytics::prometheus::exposition(&refs))
}
