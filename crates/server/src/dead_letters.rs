//! The dead letters in the workspace: what could not be delivered and why, and, for those who
//! may, a retry (planned afresh, reconciled first) or a discard with a reason — the same rules
//! as `telechart queue retry|discard`, each audited with the change it makes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use maud::{DOCTYPE, Markup, html};
use telechart_policy::Permission;
use telechart_store::{AuditEntry, DeliveryRow};

use crate::AppState;
use crate::auth::{Access, Caller, Routes, SessionCaller};
use crate::error::ApiError;

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/workspace/dead-letters", Access::Requires(Permission::QueueRead), page)
        .add(Method::POST, "/workspace/dead-letters/{id}/retry", Access::Requires(Permission::QueueReplay), retry)
        .add(Method::POST, "/workspace/dead-letters/{id}/discard", Access::Requires(Permission::QueueReplay), discard)
}

fn operator_audit(caller: &Caller, action: &str, delivery: &DeliveryRow, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: action.into(),
        entity_type: "delivery".into(),
        entity_id: delivery.id.clone(),
        visit_id: Some(delivery.visit_id.clone()),
        phi: false,
        detail,
        purpose_of_use: Some("HOPERAT".into()),
        ..AuditEntry::default()
    }
}

fn when(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(telechart_visit::format_instant).unwrap_or_default()
}

/// `GET /workspace/dead-letters`: those that hold their visit back first (nothing later of the
/// visit reaches that EHR until they are dealt with), then artifacts the EHR has no path for.
async fn page(
    State(state): State<AppState>,
    caller: Caller,
    session: Option<SessionCaller>,
) -> Result<Response, ApiError> {
    let dead = state.store.dead_letters(&caller.tenant_id).await?;
    // EHR error texts can quote what was sent: reading them is audited like any chart access.
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "queue.dead.read".into(),
        entity_type: "queue".into(),
        entity_id: "dead-letters".into(),
        phi: true,
        detail: format!("{} dead letters shown", dead.len()),
        purpose_of_use: Some("HOPERAT".into()),
        ..AuditEntry::default()
    };
    state.store.audit(&entry, state.clock.now_ms()).await?;
    let (blocking, no_path): (Vec<_>, Vec<_>) = dead.iter().partition(|d| d.blocks_visit());
    let may_act = caller.role.allows(Permission::QueueReplay);
    let csrf = session.map(|s| s.session.csrf_token);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Dead letters" }
            }
            body {
                main {
                    h1 { "Dead letters" }
                    p id="dead-summary" {
                        (blocking.len()) " holding their visit back · " (no_path.len()) " with no path in their EHR"
                    }
                    h2 { "Holding their visit back" }
                    @if blocking.is_empty() { p id="none-blocking" { "No dead letter holds a visit back." } }
                    @for d in &blocking { (letter(d, may_act, csrf.as_deref())) }
                    h2 { "No path in their EHR" }
                    p { "The EHR takes this kind of artifact by no route Telechart knows; the rest of the visit went on." }
                    @for d in &no_path { (letter(d, may_act, csrf.as_deref())) }
                }
            }
        }
    };
    Ok(axum::response::Html(markup.into_string()).into_response())
}

fn letter(d: &DeliveryRow, may_act: bool, csrf: Option<&str>) -> Markup {
    html! {
        article id={ "delivery-" (d.id) } class="dead-letter" {
            h3 { (d.resource_type) " for " a href={ "/workspace/visits/" (d.visit_id) } { "visit " (d.visit_id) } }
            dl {
                dt { "Delivery" } dd class="delivery-id" { (d.id) }
                dt { "EHR connection" } dd { (d.connection_id) }
                dt { "Attempts" } dd class="attempts" { (d.attempts) }
                dt { "Plan" } dd { (d.plan.as_deref().unwrap_or("not planned")) }
                dt { "Reason" } dd class="reason" { (d.last_error.as_deref().unwrap_or("none recorded")) }
                dt { "Since" } dd { (when(d.updated_at)) }
            }
            @if may_act {
                form method="post" action={ "/workspace/dead-letters/" (d.id) "/retry" } {
                    @if let Some(csrf) = csrf { input type="hidden" name="csrf_token" value=(csrf); }
                    button { "Retry (planned afresh, reconciled first)" }
                }
                form method="post" action={ "/workspace/dead-letters/" (d.id) "/discard" } {
                    @if let Some(csrf) = csrf { input type="hidden" name="csrf_token" value=(csrf); }
                    label { "Why it is not to be sent " textarea name="reason" required minlength="3" maxlength="500" {} }
                    button { "Discard" }
                }
            }
        }
    }
}

async fn dead_letter(state: &AppState, caller: &Caller, id: &str) -> Result<DeliveryRow, ApiError> {
    match state.store.delivery(&caller.tenant_id, id).await? {
        Some(d) if d.status == "dead" => Ok(d),
        Some(d) => Err(ApiError::Conflict {
            field: None,
            message: format!("delivery {id} is {}, not a dead letter", d.status),
        }),
        None => Err(ApiError::NotFound { field: None, message: format!("no delivery {id}") }),
    }
}

async fn retry(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let delivery = dead_letter(&state, &caller, &id).await?;
    let entry = operator_audit(&caller, "delivery.retry-dead", &delivery, String::new());
    if !state.store.retry_dead_delivery(&caller.tenant_id, &id, &entry, state.clock.now_ms()).await? {
        return Err(ApiError::Conflict { field: None, message: format!("delivery {id} is no longer a dead letter") });
    }
    state.signal.notify();
    Ok(axum::response::Redirect::to("/workspace/dead-letters").into_response())
}

async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = crate::launch::form(&body);
    let reason = crate::launch::field(&pairs, "reason").unwrap_or_default();
    let reason = reason.trim();
    if !(3..=500).contains(&reason.chars().count()) {
        return Err(ApiError::invalid("reason", "say in 3 to 500 characters why it is not to be sent"));
    }
    let delivery = dead_letter(&state, &caller, &id).await?;
    let entry = operator_audit(&caller, "delivery.discard", &delivery, reason.to_owned());
    if !state.store.discard_dead_delivery(&caller.tenant_id, &id, reason, &entry, state.clock.now_ms()).await? {
        return Err(ApiError::Conflict { field: None, message: format!("delivery {id} is no longer a dead letter") });
    }
    Ok(axum::response::Redirect::to("/workspace/dead-letters").into_response())
}
