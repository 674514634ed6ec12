//! The care-plan drafter over the API: the visit's diagnoses, order and note, and the patient's
//! chart as the sandbox EHR holds it (an NSAID allergy added there), become a draft in which every
//! item names its evidence; the allergy rules the NSAID advice out and is flagged with the
//! AllergyIntolerance it rests on; the patient's own language is used; a diagnosis the knowledge
//! base lacks is said, not filled in.

use serde_json::{Value, json};

use crate::*;

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
    assert_eq!(status, 200, "{draft}");

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
