//! The note drafter over the API, on SQLite and PostgreSQL with the sandbox EHR: a withdrawn
//! recording / AI consent stops drafting (403, nothing drafted, the refusal audited and in the
//! trace); permitted, the draft cites its evidence; only a clinician signs; the signed note and
//! its Provenance reach the EHR and pass the validator.

use serde_json::{Value, json};
use telechart_sync::FaultPlan;

use crate::*;

const DIALOGUE: &str = "[doctor] hi ms. lee, what brings you in today?\n\
[patient] i've had a headache for three days, mostly on the left side.\n\
[doctor] any fever or vomiting?\n\
[patient] no fever, no vomiting.\n\
[doctor] are you taking anything for it?\n\
[patient] ibuprofen 400 mg twice a day.\n\
[doctor] on exam your neck is supple and the neurological exam is normal.\n\
[doctor] my impression is tension headache. continue ibuprofen 400 mg as needed and we will follow up in two weeks.\n\
[patient] okay, thank you.\n";

async fn call(env: &TestEnv, token: &str, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", env.api))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn consent_gates_drafting_and_a_signed_draft_reaches_the_ehr_with_its_provenance() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let (_, clinician) = env.store.create_api_token(TENANT, "dr okafor", "clinician", 0).await.unwrap();
        let clinician = clinician.expose().to_owned();
        let (_, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
        let id = visit["id"].as_str().unwrap().to_owned();
        let practitioner = visit["practitioner"].as_str().unwrap().to_owned();
        env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
        let (status, _) = env
            .post(
                &format!("/visits/{id}/vitals"),
                json!({"vitals": [{"type": "heart-rate", "value": 72, "unit": "/min"}]}),
            )
            .await;
        assert_eq!(status, 201);
        env.consent_to_telehealth(&id).await;
        env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
        let (_, recording) = env
            .post(&format!("/visits/{id}/consents"), json!({"category": "recording-ai", "decision": "permit"}))
            .await;
        let transcript = json!({"kind": "video-transcript", "title": "Visit transcript", "contentType": "text/plain", "text": DIALOGUE});
        let (status, attached) = env.post(&format!("/visits/{id}/documents"), transcript).await;
        assert_eq!(status, 201, "{attached}");
        let transcript_artifact = attached["artifacts"][0]["id"].as_str().unwrap().to_owned();

        // The patient withdraws recording / AI consent: drafting is refused, nothing is drafted.
        let recording_id = recording["id"].as_str().unwrap();
        let (status, _) = env.post(&format!("/visits/{id}/consents/{recording_id}/withdraw"), json!({})).await;
        assert_eq!(status, 201);
        let (status, outcome) = env.post(&format!("/visits/{id}/draft"), json!({})).await;
        assert_eq!(status, 403, "{outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("recording / AI drafting"), "{outcome}");
        assert_eq!(env.get(&format!("{}/visits/{id}/draft", env.api)).await.0, 404, "nothing drafted");
        let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
        assert!(!audit.iter().any(|a| a.action == "note.drafted"));
        let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
        assert!(
            trace
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["status"] == "refused-by-consent" && t["artifact"] == "recording / AI drafting"),
            "{trace}"
        );

        // Consent again: bad requests first, each naming its field.
        let (status, _) = env
            .post(&format!("/visits/{id}/consents"), json!({"category": "recording-ai", "decision": "permit"}))
            .await;
        assert_eq!(status, 201);
        for (body, field) in [
            (json!({"template": "no-such-template"}), "template"),
            (json!({"engine": "gpt-magic"}), "engine"),
            (json!({"engine": "openai-compatible"}), "engine"),
            (json!({"temperature": 2}), "temperature"),
        ] {
            let (status, outcome) = env.post(&format!("/visits/{id}/draft"), body.clone()).await;
            assert!(status == 422 || status == 400, "{body}: {status} {outcome}");
            assert!(outcome.to_string().contains(field), "{body}: {outcome}");
        }

        // Drafted: every sentence cites turns of this transcript or the visit's inputs.
        let (status, draft) =
            env.post(&format!("/visits/{id}/draft"), json!({"template": "urgent-virtual-consult"})).await;
        assert_eq!(status, 201, "{draft}");
        assert_eq!((draft["status"].as_str(), draft["version"].as_i64()), (Some("draft"), Some(1)));
        assert_eq!(draft["template"], "urgent-virtual-consult");
        let turns = draft["turns"].as_array().unwrap();
        assert_eq!(turns.len(), 8, "the two doctor lines in a row are one turn");
        assert!(turns.iter().all(|t| t["artifact"] == transcript_artifact.as_str()));
        let sentences: Vec<&Value> =
            draft["sections"].as_array().unwrap().iter().flat_map(|s| s["sentences"].as_array().unwrap()).collect();
        assert!(sentences.len() >= 4, "{draft}");
        for s in &sentences {
            let evidence = s["evidence"].as_array().unwrap();
            assert!(!evidence.is_empty(), "a sentence without evidence: {s}");
            for e in evidence {
                match e["type"].as_str().unwrap() {
                    "turn" => assert!(e["turn"].as_u64().unwrap() < 8, "{e}"),
                    _ => assert!(draft["inputs"].as_array().unwrap().iter().any(|i| i["id"] == e["id"]), "{e}"),
                }
            }
        }
        let text = draft["text"].as_str().unwrap().to_owned();
        assert!(text.contains("400 mg"), "{text}");
        let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
        assert_eq!(audit.iter().filter(|a| a.action == "note.drafted").count(), 1);

        // Only a clinician signs; the platform may draft but not sign.
        let draft_id = draft["id"].as_str().unwrap().to_owned();
        let (status, _) = env.post(&format!("/visits/{id}/draft/sign"), json!({"draft": draft_id})).await;
        assert_eq!(status, 403);
        let edited = format!("{text}\nSeen by video; the patient agreed with the plan.");
        let sign = json!({"draft": draft_id, "text": edited, "author": practitioner});
        let post = reqwest::Method::POST;
        let (status, signed) =
            call(&env, &clinician, post.clone(), &format!("/visits/{id}/draft/sign"), sign.clone()).await;
        assert_eq!(status, 201, "{signed}");
        let kinds: Vec<&str> =
            signed["artifacts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["note", "provenance"]);
        let (status, again) = call(&env, &clinician, post, &format!("/visits/{id}/draft/sign"), sign).await;
        assert_eq!(status, 409, "signed once only: {again}");
        let (_, after) = env.get(&format!("{}/visits/{id}/draft", env.api)).await;
        assert_eq!(after["status"], "signed");
        assert_eq!(after["signed"]["editDistance"], 9, "nine words added: {}", after["signed"]);
        assert_eq!(after["signed"]["by"], practitioner.as_str());

        env.drain(&env.worker("w", FaultPlan::default())).await;
        let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
        let ehr = |rtype: &str| -> Vec<String> {
            trace
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["resourceType"] == rtype && t["status"] == "done")
                .map(|t| t["ehrResource"].as_str().unwrap().to_owned())
                .collect()
        };
        let provenance = ehr("Provenance");
        assert_eq!(provenance.len(), 1, "{trace}");
        let documents = ehr("DocumentReference");
        assert_eq!(documents.len(), 2, "the transcript and the note: {trace}");
        let fetch = |reference: String| {
            let url = format!("{}/{reference}", env.sandbox.fhir_base);
            async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
        };
        let held = fetch(provenance[0].clone()).await;
        let note_ref = held["target"][0]["reference"].as_str().unwrap().to_owned();
        let note = fetch(note_ref.clone()).await;
        assert_eq!(
            (note["docStatus"].as_str(), note["authenticator"]["reference"].as_str()),
            (Some("final"), Some(practitioner.as_str()))
        );
        let entities: Vec<&str> =
            held["entity"].as_array().unwrap().iter().map(|e| e["what"]["reference"].as_str().unwrap()).collect();
        assert!(
            entities.iter().any(|e| e.starts_with("DocumentReference/") && *e != note_ref),
            "the transcript: {held}"
        );
        let agents: Vec<&str> = held["agent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(agents, ["author", "assembler"]);
        assert_eq!(held["agent"][1]["who"]["identifier"]["value"], "telechart-builtin");
        crate::validator::assert_valid(&[held.clone(), note.clone()]);

        // A signed note takes no new draft, only an amendment; signed, it replaces the first.
        let (status, refused) = env.post(&format!("/visits/{id}/draft"), json!({})).await;
        assert_eq!(status, 409, "{refused}");
        let (status, amendment) = env.post(&format!("/visits/{id}/draft"), json!({"amend": true})).await;
        assert_eq!(status, 201, "{amendment}");
        assert_eq!((amendment["version"].as_i64(), amendment["amends"].as_str()), (Some(2), Some(draft_id.as_str())));
        let amended_text = format!(
            "{}\nAddendum: the patient called back; the headache has resolved.",
            amendment["text"].as_str().unwrap()
        );
        let sign = json!({"draft": amendment["id"], "text": amended_text, "author": practitioner});
        let (status, signed) =
            call(&env, &clinician, reqwest::Method::POST, &format!("/visits/{id}/draft/sign"), sign).await;
        assert_eq!(status, 201, "{signed}");
        let (_, first) = env.get(&format!("{}/visits/{id}/draft", env.api)).await;
        assert_eq!((first["version"].as_i64(), first["status"].as_str()), (Some(2), Some("signed")));
        assert_eq!(env.store.note_draft(TENANT, &draft_id).await.unwrap().unwrap().status, "amended");
        env.drain(&env.worker("w", FaultPlan::default())).await;
        let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
        let notes: Vec<String> = trace
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["resourceType"] == "DocumentReference" && t["status"] == "done")
            .map(|t| t["ehrResource"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(notes.len(), 3, "transcript, note, amendment: {trace}");
        let amended = fetch(notes[2].clone()).await;
        assert_eq!(amended["relatesTo"][0]["code"], "replaces");
        assert_eq!(amended["relatesTo"][0]["target"]["reference"], note_ref.as_str(), "{amended}");
        let provenances =
            trace.as_array().unwrap().iter().filter(|t| t["resourceType"] == "Provenance" && t["status"] == "done");
        assert_eq!(provenances.count(), 2, "each signed version has its Provenance: {trace}");
        crate::validator::assert_valid(&[amended]);
        env.stop().await;
    }
}

/// A visit in progress with both consents, and its id.
async fn consenting_visit(env: &TestEnv, n: usize) -> String {
    let (_, visit) = env.post("/visits", json!({"appointment": env.appointment(n)})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    env.consent_to_telehealth(&id).await;
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
    let (status, _) =
        env.post(&format!("/visits/{id}/consents"), json!({"category": "recording-ai", "decision": "permit"})).await;
    assert_eq!(status, 201);
    id
}

fn text_transcript(text: &str) -> Value {
    json!({"kind": "chat-transcript", "title": "Chat", "contentType": "text/plain", "text": text})
}

#[tokio::test]
async fn bad_transcripts_get_a_precise_error_or_a_draft_that_says_what_is_missing() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let field_of = |outcome: &Value| outcome["issue"][0]["expression"][0].as_str().unwrap_or_default().to_owned();
    let why = |outcome: &Value| outcome["issue"][0]["diagnostics"].as_str().unwrap_or_default().to_owned();

    // Nothing to draft from at all.
    let bare = consenting_visit(&env, 0).await;
    let (status, outcome) = env.post(&format!("/visits/{bare}/draft"), json!({})).await;
    assert_eq!((status, field_of(&outcome)), (422, "transcript".to_owned()), "{outcome}");

    // No speaker labels; over the drafter's 4 MiB (a 5 MB transcript): named, nothing drafted.
    let unlabelled = consenting_visit(&env, 1).await;
    let (status, _) = env
        .post(
            &format!("/visits/{unlabelled}/documents"),
            text_transcript("the patient said it hurts. we talked about it."),
        )
        .await;
    assert_eq!(status, 201);
    let (status, outcome) = env.post(&format!("/visits/{unlabelled}/draft"), json!({})).await;
    assert_eq!((status, field_of(&outcome)), (422, "transcript".to_owned()), "{outcome}");
    assert!(why(&outcome).contains("no speaker labels"), "{outcome}");
    let huge = consenting_visit(&env, 2).await;
    let line = "[patient] my knee still hurts when i climb the stairs at home.\n";
    let big = line.repeat(5_000_000 / line.len() + 1);
    let (status, reply) = env.post(&format!("/visits/{huge}/documents"), text_transcript(&big)).await;
    assert_eq!(status, 201, "{reply}");
    let (status, outcome) = env.post(&format!("/visits/{huge}/draft"), json!({})).await;
    assert_eq!((status, field_of(&outcome)), (422, "transcript".to_owned()), "{outcome}");
    assert!(why(&outcome).contains("at most 4194304 bytes"), "{outcome}");
    for visit in [&bare, &unlabelled, &huge] {
        assert_eq!(env.get(&format!("{}/visits/{visit}/draft", env.api)).await.0, 404, "nothing drafted");
    }

    // Non-UTF-8 bytes and empty text never become a transcript in the first place.
    let bytes =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0x5b, 0x64, 0x5d, 0xff, 0xfe, 0x20]);
    let (status, outcome) = env
        .post(
            &format!("/visits/{bare}/documents"),
            json!({"kind": "chat-transcript", "title": "Chat", "contentType": "text/plain", "data": bytes}),
        )
        .await;
    assert_eq!(status, 422, "{outcome}");
    let (status, outcome) = env.post(&format!("/visits/{bare}/documents"), text_transcript("")).await;
    assert_eq!(status, 422, "{outcome}");

    // A readable transcript beside an unreadable one, and little said: the draft lists the
    // unread transcript and the required sections it found nothing for, inventing none.
    let (status, _) =
        env.post(&format!("/visits/{unlabelled}/documents"), text_transcript("Patient: I feel fine.")).await;
    assert_eq!(status, 201);
    let (status, draft) = env.post(&format!("/visits/{unlabelled}/draft"), json!({})).await;
    assert_eq!(status, 201, "{draft}");
    let unread = draft["unread"].as_array().unwrap();
    assert_eq!(unread.len(), 1, "{draft}");
    assert!(unread[0].as_str().unwrap().contains("no speaker labels"));
    let missing: Vec<&str> = draft["missing"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(missing.contains(&"ASSESSMENT AND PLAN") || missing.len() >= 2, "{draft}");
    for section in draft["sections"].as_array().unwrap() {
        for s in section["sentences"].as_array().unwrap() {
            assert!(!s["evidence"].as_array().unwrap().is_empty(), "no sentence without evidence: {s}");
        }
    }
    assert_eq!(draft["template"], "general-follow-up", "the sandbox's appointments are FOLLOWUP visits");

    // The Appointment's type picks the template: a walk-in gets the urgent consult's.
    let appointment = env.appointment(3);
    let url = format!("{}/Appointment/{appointment}", env.sandbox.fhir_base);
    let mut held: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    held["appointmentType"] =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "WALKIN"}]});
    let put = reqwest::Client::new().put(&url).json(&held).send().await.unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let walk_in = consenting_visit(&env, 3).await;
    env.post(
        &format!("/visits/{walk_in}/documents"),
        text_transcript("Patient: I cut my hand.\nDoctor: Keep it clean."),
    )
    .await;
    let (status, draft) = env.post(&format!("/visits/{walk_in}/draft"), json!({})).await;
    assert_eq!((status, draft["template"].as_str()), (201, Some("urgent-virtual-consult")), "{draft}");
    env.stop().await;
}
