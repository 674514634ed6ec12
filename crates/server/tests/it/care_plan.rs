//! The care-plan drafter over the API: the visit's diagnoses, order and note, and the patient's
//! chart as the sandbox EHR holds it (an NSAID allergy added there), become a draft in which every
//! item names its evidence; the allergy rules the NSAID advice out and is flagged with the
//! AllergyIntolerance it rests on; the patient's own language is used; a diagnosis the knowledge
//! base lacks is said, not filled in. Signed as edited, it reaches the EHR by each EHR's plan:
//! Goals, a CarePlan addressing the Conditions and referring to the order, and the after-visit
//! summary as HTML (or its words as plain text where the EHR takes only that), all judged by
//! HL7's validator.

use serde_json::{Value, json};
use telechart_sync::FaultPlan;

use crate::validator::assert_valid;
use crate::*;

async fn call(env: &TestEnv, token: &str, path: &str, body: Value) -> (u16, Value) {
    let response =
        reqwest::Client::new().post(format!("{}{path}", env.api)).bearer_auth(token).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A visit in progress with a note, a diagnosis of low back pain and a lab order; its id.
async fn visit_with_a_plan_to_draft(env: &TestEnv) -> (String, Value) {
    let (status, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(0))})).await;
    assert_eq!(status, 201, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("transitions", json!({"to": "arrived"})),
        ("consents", json!({"category": "telehealth", "decision": "permit"})),
        ("transitions", json!({"to": "in-progress"})),
        (
            "notes",
            json!({"title": "Visit note", "text": "Low back pain for a week after lifting. Follow up in 2 weeks.",
                   "author": visit["practitioner"], "signedAt": "2026-11-26T09:00:00Z"}),
        ),
        ("diagnoses", json!({"recorder": visit["practitioner"], "diagnoses": [{"code": "M54.50"}]})),
        (
            "orders",
            json!({"requester": visit["practitioner"], "orders": [{"kind": "lab", "code": "2160-0", "display": "Creatinine"}]}),
        ),
    ] {
        let (status, reply) = env.post(&format!("/visits/{id}/{path}"), body).await;
        assert_eq!(status, 201, "{path}: {reply}");
    }
    (id, visit)
}

/// Signs the draft as a clinician would: the first item reworded, the second removed, one added.
async fn review_and_sign(env: &TestEnv, id: &str, practitioner: &Value) -> Value {
    let (_, clinician) = env.store.create_api_token(TENANT, "dr okafor", "clinician", 0).await.unwrap();
    let clinician = clinician.expose().to_owned();
    let (status, draft) = env.post(&format!("/visits/{id}/care-plan/draft"), Value::Null).await;
    assert_eq!(status, 201, "{draft}");
    let items = draft["items"].as_array().unwrap();
    let mut signed: Vec<Value> =
        vec![json!({"from": 0, "text": format!("{} Start today.", items[0]["text"].as_str().unwrap())})];
    signed.extend((2..items.len()).map(|i| json!({"from": i, "text": items[i]["text"]})));
    signed.push(json!({"section": "lifestyle", "text": "Walk for 10 minutes after each meal."}));
    let sign = json!({"draftId": draft["id"], "items": signed, "author": practitioner});
    // A platform may ask for a draft but never sign one.
    let (status, _) = env.post(&format!("/visits/{id}/care-plan/sign"), sign.clone()).await;
    assert_eq!(status, 403);
    let bad = json!({"draftId": draft["id"], "items": [{"from": 999, "text": "x"}], "author": practitioner});
    let (status, reply) = call(env, &clinician, &format!("/visits/{id}/care-plan/sign"), bad).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["issue"][0]["expression"][0], "items[0].from", "{reply}");
    let (status, result) = call(env, &clinician, &format!("/visits/{id}/care-plan/sign"), sign.clone()).await;
    assert_eq!(status, 201, "{result}");
    let (status, again) = call(env, &clinician, &format!("/visits/{id}/care-plan/sign"), sign).await;
    assert_eq!(status, 409, "signed once: {again}");
    let (_, kept) = env.get(&format!("{}/visits/{id}/care-plan/draft", env.api)).await;
    assert_eq!(kept["status"], "signed", "{kept}");
    assert_eq!(kept["signed"]["items"].as_array().unwrap().len(), items.len(), "{kept}");
    result
}

/// Every resource of `rtype` the sandbox holds that it did not hold at `seeded` (Synthea's).
fn held(env: &TestEnv, rtype: &str, seeded: &[Value]) -> Vec<Value> {
    env.sandbox
        .sandbox
        .resources_of(rtype)
        .into_iter()
        .filter(|r| !seeded.iter().any(|s| s["id"] == r["id"] && s["resourceType"] == r["resourceType"]))
        .collect()
}

/// What the sandbox holds before the test writes anything.
fn seeded(env: &TestEnv) -> Vec<Value> {
    ["CarePlan", "Goal", "Condition", "ServiceRequest", "DocumentReference"]
        .iter()
        .flat_map(|t| env.sandbox.sandbox.resources_of(t))
        .collect()
}

#[tokio::test]
async fn a_signed_care_plan_reaches_each_ehr_by_its_plan() {
    // Generic FHIR: Goals, a CarePlan with its references, the summary as HTML.
    let env = TestEnv::start(Engine::Sqlite).await;
    let before = seeded(&env);
    let (id, visit) = visit_with_a_plan_to_draft(&env).await;
    let result = review_and_sign(&env, &id, &visit["practitioner"]).await;
    let kinds: Vec<&str> =
        result["artifacts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"goal") && kinds.contains(&"care-plan") && kinds.contains(&"document"), "{kinds:?}");
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let plans = held(&env, "CarePlan", &before);
    assert_eq!(plans.len(), 1);
    let plan = &plans[0];
    let condition = &held(&env, "Condition", &before)[0];
    assert_eq!(plan["addresses"][0]["reference"], format!("Condition/{}", condition["id"].as_str().unwrap()), "{plan}");
    let order = &held(&env, "ServiceRequest", &before)[0];
    let activities = plan["activity"].as_array().unwrap();
    assert!(
        activities
            .iter()
            .any(|a| a["reference"]["reference"] == format!("ServiceRequest/{}", order["id"].as_str().unwrap())),
        "the lab is the order's activity: {plan}"
    );
    assert!(activities.iter().any(|a| a["detail"]["description"] == "Walk for 10 minutes after each meal."), "{plan}");
    assert!(activities.iter().all(|a| a.get("reference").is_none() || a.get("detail").is_none()), "cpl-3: {plan}");
    let goals = held(&env, "Goal", &before);
    assert!(!goals.is_empty());
    assert_eq!(plan["goal"].as_array().unwrap().len(), goals.len(), "{plan}");
    assert!(goals.iter().all(|g| g["addresses"][0]["reference"] == plan["addresses"][0]["reference"]), "{goals:?}");
    let summaries: Vec<Value> = held(&env, "DocumentReference", &before)
        .into_iter()
        .filter(|d| d["type"]["coding"][0]["code"] == "34133-9")
        .collect();
    assert_eq!(summaries.len(), 1);
    let attachment = &summaries[0]["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "text/html; charset=utf-8");
    let html = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, attachment["data"].as_str().unwrap())
        .unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("<h1>") && html.contains("Walk for 10 minutes after each meal."), "{html}");
    assert!(html.contains(&format!(r#"<html lang="{}">"#, attachment["language"].as_str().unwrap())), "{html}");
    let mut written = plans.clone();
    written.extend(goals);
    written.extend(summaries);
    assert_valid(&written);
    // Fifteen days on, the two-week follow-up is overdue: listed for the care team, and recorded
    // once as an adherence event however often the list is read.
    env.clock.advance(std::time::Duration::from_secs(15 * 86_400));
    for _ in 0..2 {
        let (status, overdue) = env.get(&format!("{}/follow-ups/overdue", env.api)).await;
        assert_eq!(status, 200, "{overdue}");
        let overdue = overdue.as_array().unwrap();
        assert_eq!(overdue.len(), 1, "{overdue:?}");
        assert!(overdue[0]["text"].as_str().unwrap().contains("2 weeks") && overdue[0]["overdue"] == true);
    }
    let events = env.store.adherence_events(TENANT, 0).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "follow-up-overdue").count(), 1, "{events:?}");
    env.stop().await;

    // Epic-like: no CarePlan or Goal create (planned, not failed); the summary as plain text.
    let env = TestEnv::start_vendor(Engine::Sqlite, telechart_sandbox::Personality::Epic, "epic").await;
    let before = seeded(&env);
    let (id, visit) = visit_with_a_plan_to_draft(&env).await;
    review_and_sign(&env, &id, &visit["practitioner"]).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
    let text = trace.to_string();
    assert!(text.contains("no CarePlan create") && text.contains("no Goal create"), "{trace}");
    assert!(held(&env, "CarePlan", &before).is_empty() && held(&env, "Goal", &before).is_empty());
    let summary = held(&env, "DocumentReference", &before)
        .into_iter()
        .find(|d| d["type"]["coding"][0]["code"] == "34133-9")
        .expect("the summary is in the chart");
    let attachment = &summary["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "text/plain");
    let words =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, attachment["data"].as_str().unwrap())
            .unwrap();
    let words = String::from_utf8(words).unwrap();
    assert!(!words.contains('<') && words.contains("Walk for 10 minutes after each meal."), "{words}");
    assert_valid(&[summary]);
    env.stop().await;
}

#[tokio::test]
async fn a_drafted_care_plan_rests_on_the_visit_and_the_chart() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let (status, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(0))})).await;
    assert_eq!(status, 201, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let patient = visit["patient"].as_str().unwrap().to_owned();
    // The EHR's chart: an ibuprofen allergy recorded there.
    let allergy = json!({"resourceType": "AllergyIntolerance", "patient": {"reference": patient},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"text": "Ibuprofen"}});
    let created = reqwest::Client::new()
        .post(format!("{}/AllergyIntolerance", env.sandbox.fhir_base))
        .header("content-type", "application/fhir+json")
        .body(allergy.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let allergy_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("transitions", json!({"to": "arrived"})),
        ("consents", json!({"category": "telehealth", "decision": "permit"})),
        ("transitions", json!({"to": "in-progress"})),
        (
            "notes",
            json!({"title": "Visit note", "text": "Low back pain for a week after lifting. Follow up in 2 weeks.",
                         "author": visit["practitioner"], "signedAt": "2026-11-26T09:00:00Z"}),
        ),
        ("diagnoses", json!({"recorder": visit["practitioner"], "diagnoses": [{"code": "M54.50"}, {"code": "Q90.9"}]})),
        (
            "orders",
            json!({"requester": visit["practitioner"], "orders": [
            {"kind": "lab", "code": "2160-0", "display": "Creatinine"}]}),
        ),
    ] {
        let (status, reply) = env.post(&format!("/visits/{id}/{path}"), body).await;
        assert_eq!(status, 201, "{path}: {reply}");
    }
    let (status, draft) = env.post(&format!("/visits/{id}/care-plan/draft"), Value::Null).await;
    assert_eq!(status, 201, "{draft}");

    let items = draft["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| !i["evidence"].as_array().unwrap().is_empty()), "every item has evidence: {draft}");
    assert_eq!(draft["addresses"][0][0], "low-back-pain", "{draft}");
    // The allergy is on the chart: the NSAID advice is out, and flagged with its evidence.
    assert!(!items.iter().any(|i| i["text"].as_str().unwrap().contains("ibuprofen")), "{draft}");
    let conflict = &draft["conflicts"][0];
    assert_eq!(
        conflict["evidence"][0],
        json!({"kind": "chart", "ref": format!("AllergyIntolerance/{allergy_id}")}),
        "{draft}"
    );
    // The order and the note's follow-up are tasks, each citing where it came from.
    assert!(items.iter().any(|i| i["evidence"][0]["kind"] == "order"), "{draft}");
    assert!(items.iter().any(|i| i["evidence"][0]["kind"] == "note-sentence"), "{draft}");
    // Q90.9 has no entry: said, not invented.
    assert!(draft["gaps"].as_array().unwrap().iter().any(|g| g.as_str().unwrap().contains("Q90.9")), "{draft}");
    // The patient's language, as the EHR's Patient.communication says.
    let (_, person) = env.get(&format!("{}/{patient}", env.sandbox.fhir_base)).await;
    let spanish = person["communication"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c.pointer("/language/coding/0/code").and_then(Value::as_str).is_some_and(|l| l.starts_with("es")));
    assert_eq!(draft["language"], if spanish { "es" } else { "en" }, "{draft}");
    assert!(draft["afterVisitSummary"].as_array().unwrap().len() >= 3, "{draft}");
    env.stop().await;
}

/// Bad input: a visit with no diagnosis, and a chart read that fails mid-draft (the EHR answers
/// 503 to the allergy search) — the draft says what it could not do and invents nothing.
#[tokio::test]
async fn a_draft_says_what_it_could_not_do() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let (status, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(1))})).await;
    assert_eq!(status, 201, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("transitions", json!({"to": "arrived"})),
        ("consents", json!({"category": "telehealth", "decision": "permit"})),
        ("transitions", json!({"to": "in-progress"})),
    ] {
        let (status, reply) = env.post(&format!("/visits/{id}/{path}"), body).await;
        assert_eq!(status, 201, "{path}: {reply}");
    }
    // No diagnosis: no condition-specific instruction, and the gap says why.
    let (status, draft) = env.post(&format!("/visits/{id}/care-plan/draft"), Value::Null).await;
    assert_eq!(status, 201, "{draft}");
    assert!(draft["items"].as_array().unwrap().is_empty(), "{draft}");
    assert!(draft["gaps"].to_string().contains("no diagnosis"), "{draft}");
    // Nothing to sign: refused with the reason, nothing recorded.
    let (_, clinician) = env.store.create_api_token(TENANT, "dr okafor", "clinician", 0).await.unwrap();
    let sign = json!({"draftId": draft["id"], "author": visit["practitioner"]});
    let response = reqwest::Client::new()
        .post(format!("{}/visits/{id}/care-plan/sign", env.api))
        .bearer_auth(clinician.expose())
        .json(&sign)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    assert!(env.store.patient_tasks(TENANT, &id).await.unwrap().is_empty());

    // Low back pain, and the EHR fails the allergy read mid-draft: the NSAID advice, which
    // depends on it, is left out and said to be; the rest of the draft stands.
    let (status, _) = env
        .post(
            &format!("/visits/{id}/diagnoses"),
            json!({"recorder": visit["practitioner"], "diagnoses": [{"code": "M54.50"}]}),
        )
        .await;
    assert_eq!(status, 201);
    env.sandbox.sandbox.inject(
        serde_json::from_value(json!({"status": 503, "method": "GET", "resourceType": "AllergyIntolerance"})).unwrap(),
    );
    let (status, draft) = env.post(&format!("/visits/{id}/care-plan/draft"), Value::Null).await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(env.sandbox.sandbox.faults_pending(), 0, "the read fault struck");
    assert!(draft["gaps"].to_string().contains("allergies could not be read"), "{draft}");
    let items = draft["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{draft}");
    assert!(!items.iter().any(|i| i["text"].as_str().unwrap().to_lowercase().contains("ibuprofen")), "{draft}");
    assert!(draft["conflicts"].to_string().contains("could not be read"), "{draft}");
    env.stop().await;
}
