//! The clinicians' one-question survey ("How likely are you to recommend Telechart to a
//! colleague?", 0–10), offered in the workspace right after a note is signed and through the API,
//! at most once in 30 days per clinician: an answer or a "not now" both start the quiet period,
//! so no one is asked after every visit. The answers feed the NPS figure of the analytics.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use telechart_policy::Permission;

use crate::auth::{Access, Caller, Routes};
use crate::{ApiError, AppState};

/// How long after an answer (or a dismissal) the survey is not offered again.
pub(crate) const NPS_QUIET_MS: i64 = 30 * 86_400_000;
pub(crate) const QUESTION: &str = "How likely are you to recommend Telechart to a colleague?";

pub(crate) fn routes() -> Routes {
    use Permission::NoteSign;
    Routes::new()
        .add(Method::GET, "/api/v1/surveys/nps", Access::Requires(NoteSign), nps_offer)
        .add(Method::POST, "/api/v1/surveys/nps", Access::Requires(NoteSign), nps_answer)
        .add(Method::POST, "/workspace/visits/{id}/survey", Access::Requires(NoteSign), form_answer)
}

/// Who answers: the clinician's Practitioner when linked (so their own dashboard finds it),
/// else the account.
async fn respondent(state: &AppState, caller: &Caller) -> Result<String, ApiError> {
    let linked = match caller.actor.strip_prefix("user:") {
        Some(user) => state.store.user(&caller.tenant_id, user).await?.and_then(|u| u.fhir_user),
        None => None,
    };
    Ok(linked.map(|p| if p.contains('/') { p } else { format!("Practitioner/{p}") }).unwrap_or(caller.actor.clone()))
}

/// Whether to ask this clinician now: never answered or dismissed, or not in the last 30 days.
pub(crate) async fn due(state: &AppState, caller: &Caller) -> Result<bool, ApiError> {
    due_for(state, &caller.tenant_id, &respondent(state, caller).await?).await
}

async fn due_for(state: &AppState, tenant_id: &str, respondent: &str) -> Result<bool, ApiError> {
    let last = state.store.last_nps_answer(tenant_id, respondent).await?;
    Ok(last.is_none_or(|at| state.clock.now_ms() - at >= NPS_QUIET_MS))
}

/// Records an answer (`None`: dismissed) unless the quiet period holds (409).
async fn record(
    state: &AppState,
    caller: &Caller,
    score: Option<i64>,
    visit_id: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(score) = score
        && !(0..=10).contains(&score)
    {
        return Err(ApiError::invalid("score", format!("{score} is not a score from 0 to 10")));
    }
    let who = respondent(state, caller).await?;
    if !due_for(state, &caller.tenant_id, &who).await? {
        return Err(ApiError::Conflict {
            field: None,
            message: "the survey was answered in the last 30 days; it is asked at most once a month".into(),
        });
    }
    Ok(state.store.record_nps(&caller.tenant_id, &who, visit_id, score, state.clock.now_ms()).await?)
}

#[derive(Serialize)]
struct NpsOffer {
    offer: bool,
    question: &'static str,
}

/// `GET /api/v1/surveys/nps`: whether to ask this clinician now, and the question.
async fn nps_offer(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    Ok(axum::Json(NpsOffer { offer: due(&state, &caller).await?, question: QUESTION }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NpsAnswer {
    /// 0–10, or null to dismiss.
    score: Option<i64>,
    #[serde(default)]
    visit_id: Option<String>,
}

/// `POST /api/v1/surveys/nps`: an answer, or `{"score": null}` for "not now".
async fn nps_answer(State(state): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    let answer: NpsAnswer = crate::api::parse(&body)?;
    let id = record(&state, &caller, answer.score, answer.visit_id.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({ "id": id }))).into_response())
}

/// The survey's form on the review page after signing: eleven labelled choices in a fieldset
/// (keyboard and screen-reader friendly, no script), "Send" and "Not now".
pub(crate) fn form(visit_id: &str, csrf: &str) -> Markup {
    html! {
        form id="nps-survey" method="post" action={ "/workspace/visits/" (visit_id) "/survey" } class="survey" {
            input type="hidden" name="csrf_token" value=(csrf);
            fieldset {
                legend { (QUESTION) }
                p class="meta" id="nps-scale" { "0 = not at all likely, 10 = extremely likely. Asked at most once a month." }
                div class="scale" {
                    @for score in 0..=10 {
                        label class="score" {
                            input type="radio" name="score" value=(score) id={ "nps-" (score) } aria-describedby="nps-scale";
                            (score)
                        }
                    }
                }
            }
            button id="nps-send" name="answer" value="send" { "Send" }
            " "
            button id="nps-dismiss" name="answer" value="dismiss" { "Not now" }
        }
    }
}

/// The workspace form's answer, then back to the review page (which thanks and no longer asks).
async fn form_answer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = crate::launch::form(&body);
    let score = match (crate::launch::field(&pairs, "answer"), crate::launch::field(&pairs, "score")) {
        (Some("dismiss"), _) => None,
        (_, Some(s)) => Some(
            s.parse::<i64>().map_err(|_| ApiError::invalid("score", format!("{s:?} is not a score from 0 to 10")))?,
        ),
        (_, None) => return Err(ApiError::invalid("score", "choose a score from 0 to 10, or \"Not now\"")),
    };
    // The visit must be the caller's to see (tenant, and care relationship where enforced).
    let visit = crate::api::load(&state, &caller, &id).await?;
    record(&state, &caller, score, Some(&visit.id)).await?;
    let done = if score.is_some() { "thanks" } else { "dismissed" };
    Ok(Redirect::to(&format!("/workspace/visits/{}/draft?survey={done}", visit.id)).into_response())
}
