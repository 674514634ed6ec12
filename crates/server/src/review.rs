//! The clinician's review of a drafted note in the workspace: the draft beside the transcript;
//! clicking a sentence highlights the turns and inputs it cites; flagged sentences stand out
//! with what code could not find; the note is edited in place and signed. HTML through maud; the
//! only script is a static file served under a strict Content-Security-Policy.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use telechart_policy::Permission;
use telechart_scribe::{Evidence, FlagKind};

use crate::auth::{Access, Caller, Routes, SessionCaller};
use crate::drafting::{DraftView, draft_view, visit_material};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/workspace/visits/{id}/draft", Access::Requires(Permission::VisitRead), page)
        .add(Method::POST, "/workspace/visits/{id}/draft", Access::Requires(Permission::NoteDraft), form_draft)
        .add(Method::POST, "/workspace/visits/{id}/draft/sign", Access::Requires(Permission::NoteSign), form_sign)
        .add(Method::GET, "/workspace/assets/review.js", Access::Public, script)
}

const REVIEW_JS: &str = include_str!("../assets/review.js");
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'";

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], REVIEW_JS)
        .into_response()
}

use crate::launch::form;

/// A filled form field as typed (a note's text keeps its whitespace).
fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.as_str())
}

fn to_page(id: &str) -> Response {
    Redirect::to(&format!("/workspace/visits/{id}/draft")).into_response()
}

/// "Draft the note" on the workspace: drafted as the API drafts (consent first).
async fn form_draft(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let json = match field(&pairs, "template") {
        Some(t) => serde_json::json!({ "template": t }),
        None => serde_json::json!({}),
    };
    let _draft = crate::drafting::create(state, caller, Path(id.clone()), json.to_string().into()).await?;
    Ok(to_page(&id))
}

/// "Sign": the text as edited in the page, signed by the clinician whose session this is.
async fn form_sign(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let draft = field(&pairs, "draft").ok_or_else(|| ApiError::invalid("draft", "which draft?"))?;
    let mut json = serde_json::json!({ "draft": draft });
    if let Some(text) = field(&pairs, "text") {
        // Browsers send CRLF line breaks from a textarea.
        json["text"] = serde_json::Value::String(text.replace("\r\n", "\n"));
    }
    let _event = crate::drafting::sign(state, caller, Path(id.clone()), json.to_string().into()).await?;
    Ok(to_page(&id))
}

fn evidence_ids(evidence: &[Evidence]) -> String {
    evidence
        .iter()
        .map(|e| match e {
            Evidence::Turn { turn } => format!("turn-{turn}"),
            Evidence::Input { id } => format!("input-{id}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn flag_text(kind: FlagKind, token: &str) -> String {
    match kind {
        FlagKind::NoEvidence => "cites no evidence".to_owned(),
        FlagKind::Number => format!("the number {token} is not in its evidence"),
        FlagKind::Medication => format!("the medication {token} is not in its evidence"),
        FlagKind::Dose => format!("the dose {token} is not in its evidence"),
        FlagKind::Laterality => format!("the side \u{201c}{token}\u{201d} is not in its evidence"),
    }
}

/// The review page of the visit's latest draft (or the button to draft one).
async fn page(
    State(state): State<AppState>,
    caller: Caller,
    session: Option<SessionCaller>,
    Path(id): Path<String>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let visit = crate::api::load(&state, &caller, &id).await?;
    let entry = telechart_store::AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "visit.read".into(),
        entity_type: "visit".into(),
        entity_id: id.clone(),
        visit_id: Some(id.clone()),
        phi: true,
        detail: "note draft review".into(),
        purpose_of_use: Some("TREAT".into()),
        ..Default::default()
    };
    state.store.audit(&entry, state.clock.now_ms()).await?;
    let draft = match state.store.latest_note_draft(&caller.tenant_id, &visit.id).await? {
        Some(row) => {
            let material = visit_material(&state, &caller, &visit).await?;
            Some(draft_view(&row, &material, &visit)?)
        }
        None => None,
    };
    let csrf = session.map(|s| s.session.csrf_token);
    // The survey follows a signature, in a signed-in clinician's page, when it is due.
    let survey = match (query.get("survey").map(String::as_str), &draft, &csrf) {
        (Some("thanks"), _, _) => Survey::Thanked,
        (_, Some(d), Some(csrf)) if d.signed.is_some() && crate::survey::due(&state, &caller).await? => {
            Survey::Ask(csrf.clone())
        }
        _ => Survey::None,
    };
    let markup = render(&id, draft.as_ref(), csrf.as_deref(), &survey);
    Ok(([(header::CONTENT_SECURITY_POLICY, CSP)], axum::response::Html(markup.into_string())).into_response())
}

/// What the page shows of the clinicians' survey.
enum Survey {
    None,
    /// The form, with the session's CSRF token.
    Ask(String),
    Thanked,
}

fn render(visit_id: &str, draft: Option<&DraftView>, csrf: Option<&str>, survey: &Survey) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Telechart · note draft" }
                style { (STYLE) }
                script src="/workspace/assets/review.js" defer {}
            }
            body {
                p { a href={ "/workspace/visits/" (visit_id) } { "← back to the visit" } }
                @match draft {
                    None => {
                        h1 { "No draft yet" }
                        @if let Some(csrf) = csrf {
                            form method="post" action={ "/workspace/visits/" (visit_id) "/draft" } {
                                input type="hidden" name="csrf_token" value=(csrf);
                                button id="draft-note" { "Draft the note from the visit" }
                            }
                        }
                    }
                    Some(d) => { (draft_body(visit_id, d, csrf)) }
                }
                @match survey {
                    Survey::Ask(csrf) => { (crate::survey::form(visit_id, csrf)) }
                    Survey::Thanked => { p id="nps-thanks" role="status" { "Thank you: your answer was recorded." } }
                    Survey::None => {}
                }
            }
        }
    }
}

fn draft_body(visit_id: &str, d: &DraftView, csrf: Option<&str>) -> Markup {
    html! {
        h1 { "Note draft " span id="draft-status" { (d.status) } }
        p class="meta" {
            "Version " (d.version) " · engine " (d.engine) " · template " (d.template) " · "
            (d.sentence_count) " sentences, " span id="flagged-count" { (d.flagged) } " flagged · drafted in " (d.draft_ms) " ms"
        }
        @if !d.missing.is_empty() {
            p class="missing" id="missing" { "Not found in the visit: " (d.missing.join(", ")) }
        }
        div class="columns" {
            section class="draft" aria-label="Draft" {
                @for section in &d.sections {
                    h2 { (section.title) }
                    @if section.sentences.is_empty() {
                        p class="empty" { "Not discussed during this visit." }
                    }
                    p {
                        @for (n, sentence) in section.sentences.iter().enumerate() {
                            @let flagged = !sentence.flags.is_empty();
                            span class={ "sentence" @if flagged { " flagged" } }
                                id={ "s-" (section.id) "-" (n) }
                                tabindex="0" role="button"
                                data-evidence=(evidence_ids(&sentence.evidence))
                                title=[flagged.then(|| sentence.flags.iter().map(|f| flag_text(f.kind, &f.token)).collect::<Vec<_>>().join("; "))] {
                                (sentence.text)
                            }
                            " "
                        }
                    }
                }
            }
            section class="evidence" aria-label="Evidence" {
                h2 { "Transcript" }
                ol class="turns" {
                    @for turn in &d.turns {
                        li id={ "turn-" (turn.id) } class="turn" {
                            b { (turn.speaker) ": " } (turn.text)
                        }
                    }
                }
                @if !d.inputs.is_empty() {
                    h2 { "Visit inputs" }
                    ul class="inputs" {
                        @for input in &d.inputs {
                            li id={ "input-" (input.id) } class="input" { (input.text) }
                        }
                    }
                }
            }
        }
        @match (&d.signed, csrf) {
            (Some(signed), _) => {
                p id="signed" { "Signed by " (signed.by) @if let Some(distance) = signed.edit_distance { " · " (distance) " word(s) edited from the draft" } }
            }
            (None, Some(csrf)) if d.status == "draft" => {
                form method="post" action={ "/workspace/visits/" (visit_id) "/draft/sign" } class="sign" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    input type="hidden" name="draft" value=(d.id);
                    label for="note-edit" { "The note as you sign it (flagged sentences must be fixed or removed)" }
                    textarea id="note-edit" name="text" rows="24" { (d.text) }
                    button id="sign-draft" { "Sign note" }
                }
            }
            _ => {}
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:90rem}\
.columns{display:grid;grid-template-columns:3fr 2fr;gap:2rem}\
.sentence{cursor:pointer;border-radius:3px}.sentence:hover,.sentence:focus{background:#eef}\
.sentence.selected{outline:2px solid #3366cc}\
.sentence.flagged{background:#fde2e2;text-decoration:underline wavy #b00020}\
.turn,.input{padding:.15rem .3rem;border-radius:3px}\
.highlighted{background:#fff3b0;outline:1px solid #c9a400}\
.missing{color:#8a4b00}.meta{color:#555}textarea{width:100%;font:inherit}\
.survey{margin-top:2rem;max-width:40rem}.survey fieldset{border:1px solid #888;border-radius:4px}\
.scale{display:flex;flex-wrap:wrap;gap:.4rem;margin:.5rem 0}.score{padding:.2rem .4rem;border:1px solid #888;border-radius:3px}";
