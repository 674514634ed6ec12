//! Analytics over a recorded event stream: `tests/fixtures/analytics-stream.json` (six visits
//! driven through the API with faults, a replay, a consent denial, a break-glass grant and
//! survey answers) is replayed on each engine, and every KPI is checked against a value worked
//! out by hand from the script — or, for the read-back and latency figures, computed here from
//! the raw delivery rows. The JSON report, the CSV and `/metrics` must say the same. Bad filters
//! get a clear message, never a 500 or a division by zero.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use telechart_sync::webhooks::OnCallEnded;
use telechart_sync::{Platform, Platforms, webhooks};

use crate::*;

const SECRET: &[u8] = b"whsec-analytics-0123456789abcdef0123";

fn platforms() -> Platforms {
    Platforms(Arc::new(vec![Platform {
        id: "video".into(),
        tenant_id: TENANT.into(),
        webhook_url: None,
        secret: SECRET.to_vec(),
        events: vec![],
        on_call_ended: OnCallEnded::FinishWhenSigned,
        phi_basis: telechart_sync::PhiBasis::Treatment,
    }]))
}

async fn send(method: reqwest::Method, url: String, token: &str, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(token);
    if !body.is_null() {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_text(url: String, token: &str) -> (u16, String) {
    let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Runs the worker until nothing is due, moving the clock to each retry; dead letters stay.
async fn settle(env: &TestEnv) {
    let worker = env.worker("w", telechart_sync::FaultPlan::default());
    for _ in 0..500 {
        if !worker.run_once().await.unwrap().is_empty() {
            continue;
        }
        let Some(next) = env.store.next_due_at(TENANT).await.unwrap() else { return };
        env.clock.advance(std::time::Duration::from_millis((next - env.clock.now_ms()).max(1) as u64));
    }
    panic!("the queue did not settle");
}

/// A clinician's API token, one per name.
async fn token_for(env: &TestEnv, tokens: &mut HashMap<String, String>, name: &str) -> String {
    if let Some(t) = tokens.get(name) {
        return t.clone();
    }
    let (_, token) = env.store.create_api_token(TENANT, name, "clinician", 0).await.unwrap();
    tokens.insert(name.to_owned(), token.expose().to_owned());
    token.expose().to_owned()
}

struct Replayed {
    visits: HashMap<String, String>,
    marks: HashMap<String, i64>,
}

/// Replays the fixture's steps against `env`.
async fn replay(env: &TestEnv, admin: &str) -> Replayed {
    let script: Value =
        serde_json::from_str(include_str!("../fixtures/analytics-stream.json")).expect("the fixture is JSON");
    let mut visits: HashMap<String, String> = HashMap::new();
    let mut practitioners: HashMap<String, String> = HashMap::new();
    let mut drafts: HashMap<String, Value> = HashMap::new();
    let mut marks = HashMap::new();
    let mut clinicians: HashMap<String, String> = HashMap::new();
    let mut event_seq = 0;
    for (n, step) in script["steps"].as_array().unwrap().iter().enumerate() {
        let expect = step["expect"].as_u64().unwrap_or(0) as u16;
        let label = visits.get(step["visit"].as_str().unwrap_or_default()).cloned().unwrap_or_default();
        let practitioner = practitioners.get(step["visit"].as_str().unwrap_or_default()).cloned().unwrap_or_default();
        let with_practitioner = |body: &Value| -> Value {
            serde_json::from_str(&body.to_string().replace("$practitioner", &practitioner)).unwrap()
        };
        let (status, reply) = if let Some(key) = step["open"].as_str() {
            let appointment = env.appointment(step["appointment"].as_u64().unwrap() as usize);
            let (status, visit) =
                env.post("/visits", json!({"appointment": format!("Appointment/{appointment}")})).await;
            visits.insert(key.to_owned(), visit["id"].as_str().unwrap().to_owned());
            practitioners.insert(key.to_owned(), visit["practitioner"].as_str().unwrap().to_owned());
            (status, visit)
        } else if let Some(path) = step["post"].as_str() {
            env.post(&format!("/visits/{label}/{path}"), with_practitioner(&step["body"])).await
        } else if let Some(path) = step["put"].as_str() {
            let response = env
                .http
                .put(format!("{}/visits/{label}/{path}", env.api))
                .json(&with_practitioner(&step["body"]))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), Value::Null)
        } else if let Some(kind) = step["event"].as_str() {
            event_seq += 1;
            let body = json!({"id": format!("evt-{event_seq}"), "type": kind, "data": {"visitId": label}}).to_string();
            let response = reqwest::Client::new()
                .post(format!("{}/platform-events", env.api))
                .header("content-type", "application/json")
                .header("telechart-platform", "video")
                .header("telechart-signature", webhooks::sign(SECRET, env.clock.now_ms() / 1000, body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), Value::Null)
        } else if let Some(seconds) = step["advance_s"].as_u64() {
            env.clock.advance(std::time::Duration::from_secs(seconds));
            (0, Value::Null)
        } else if step["draft"].as_bool() == Some(true) {
            let (status, draft) = env.post(&format!("/visits/{label}/draft"), json!({})).await;
            drafts.insert(label.clone(), draft.clone());
            (status, draft)
        } else if let Some(added) = step["sign"].as_str() {
            let draft = &drafts[&label];
            let text = format!("{}{added}", draft["text"].as_str().unwrap());
            let token = token_for(env, &mut clinicians, "dr signer").await;
            let sign = json!({"draft": draft["id"], "text": text, "title": "Visit note", "author": practitioner});
            send(reqwest::Method::POST, format!("{}/visits/{label}/draft/sign", env.api), &token, &sign).await
        } else if let Some(path) = step["clinician_post"].as_str() {
            let token = token_for(env, &mut clinicians, "dr signer").await;
            send(reqwest::Method::POST, format!("{}/visits/{label}/{path}", env.api), &token, &step["body"]).await
        } else if let Some(fault) = step.get("fault") {
            env.sandbox.sandbox.inject(serde_json::from_value(fault.clone()).unwrap());
            (0, Value::Null)
        } else if step["drain"].as_bool() == Some(true) {
            if let Some(mark) = step["mark"].as_str() {
                marks.insert(mark.to_owned(), env.clock.now_ms());
            }
            settle(env).await;
            (0, Value::Null)
        } else if let Some(key) = step["replay"].as_str() {
            send(reqwest::Method::POST, format!("{}/visits/{}/replay", env.api, visits[key]), admin, &Value::Null).await
        } else if step.get("survey").is_some() {
            let token = token_for(env, &mut clinicians, step["as"].as_str().unwrap()).await;
            send(reqwest::Method::POST, format!("{}/surveys/nps", env.api), &token, &json!({"score": step["survey"]}))
                .await
        } else {
            panic!("step {n}: unknown {step}");
        };
        if let Some(mark) = step["mark"].as_str() {
            marks.entry(mark.to_owned()).or_insert(env.clock.now_ms());
        }
        match (status, expect) {
            (0, _) => {}
            (s, 0) => assert!((200..300).contains(&s), "step {n} {step}: {s} {reply}"),
            (s, e) => assert_eq!(s, e, "step {n} {step}: {reply}"),
        }
    }
    Replayed { visits, marks }
}

fn kpi<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["kpis"].as_array().unwrap().iter().find(|k| k["id"] == id).unwrap_or_else(|| panic!("no KPI {id}"))
}

fn assert_kpi(report: &Value, id: &str, value: Option<f64>, numerator: i64, denominator: i64) {
    let k = kpi(report, id);
    match value {
        Some(v) => assert!((k["value"].as_f64().unwrap() - v).abs() < 1e-9, "{id}: {k}"),
        None => assert!(k["value"].is_null(), "{id}: {k}"),
    }
    assert_eq!(
        (k["numerator"].as_i64().unwrap(), k["denominator"].as_i64().unwrap()),
        (numerator, denominator),
        "{id}: {k}"
    );
}

/// `promtool check metrics` (Debian's `prometheus` package) on the exposition: its parser and
/// its lint (names, units, HELP and TYPE). Required where `TELECHART_REQUIRE_PROMTOOL=1` (CI).
fn promtool_check(metrics: &str) {
    use std::io::Write as _;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("TELECHART_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "promtool is required: apt-get install prometheus"
        );
        eprintln!("note: promtool not installed; metrics lint skipped");
        return;
    };
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nearest-rank quantile.
fn nearest_rank(mut values: Vec<i64>, p: f64) -> i64 {
    values.sort_unstable();
    values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1]
}

#[tokio::test]
async fn every_kpi_of_a_replayed_event_stream_matches_its_hand_computed_value() {
    for engine in engines() {
        let env = TestEnv::start_with_platforms(engine, platforms()).await;
        let started_at = env.clock.now_ms();
        let (_, admin) = env.store.create_api_token(TENANT, "integration", "integration-admin", 0).await.unwrap();
        let admin = admin.expose().to_owned();
        let (_, manager) = env.store.create_api_token(TENANT, "practice manager", "manager", 0).await.unwrap();
        let manager = manager.expose().to_owned();
        let r = replay(&env, &admin).await;
        let v = |k: &str| r.visits[k].clone();
        let range = format!(
            "from={}&to={}",
            chrono::DateTime::from_timestamp_millis(started_at - 1000).unwrap().to_rfc3339().replace('+', "%2B"),
            chrono::DateTime::from_timestamp_millis(env.clock.now_ms()).unwrap().to_rfc3339().replace('+', "%2B"),
        );
        let (status, report) =
            send(reqwest::Method::GET, format!("{}/analytics?{range}", env.api), &manager, &Value::Null).await;
        assert_eq!(status, 200, "{report}");

        // Volume: six visits; A, B, C finished; D cancelled; E no-show; F stayed arrived.
        assert_kpi(&report, "visits", Some(6.0), 6, 0);
        assert_kpi(&report, "completion_ratio", Some(0.5), 3, 6);
        assert_kpi(&report, "cancellation_ratio", Some(1.0 / 6.0), 1, 6);
        assert_kpi(&report, "no_show_ratio", Some(1.0 / 6.0), 1, 6);
        // A and B reached the EHR untouched (a 429 retried by the worker is no manual touch);
        // C's Condition was a dead letter, replayed by a person.
        assert_kpi(&report, "auto_logged_ratio", Some(2.0 / 3.0), 2, 3);
        // Drafted notes: A and B, not C. Edit distance: A signed as drafted (0), B added 4 words.
        assert_kpi(&report, "notes_drafted_ratio", Some(2.0 / 3.0), 2, 3);
        assert_kpi(&report, "note_edit_distance_mean", Some(2.0), 4, 2);
        // Call end → signed: A 120 s, B 300 s.
        assert_kpi(&report, "documentation_seconds_p50", Some(120.0), 120_000, 2);
        assert_kpi(&report, "documentation_seconds_p90", Some(300.0), 300_000, 2);
        // Call end → chart closed: B's deliveries all went at the first drain; A's waited behind
        // its Observation, retried after the EHR's Retry-After of 5 s.
        let drain = r.marks["first drain"];
        let closure_a = drain + 5_000 - r.marks["A ended"];
        let closure_b = drain - r.marks["B ended"];
        assert_kpi(
            &report,
            "chart_closure_seconds_p50",
            Some(closure_a.min(closure_b) as f64 / 1000.0),
            closure_a.min(closure_b),
            2,
        );
        assert_kpi(
            &report,
            "chart_closure_seconds_p90",
            Some(closure_a.max(closure_b) as f64 / 1000.0),
            closure_a.max(closure_b),
            2,
        );
        // Claims: only A is clean. B billed modifier 93 for a video visit; C has no billing.
        assert_kpi(&report, "clean_claim_ratio", Some(1.0 / 3.0), 1, 3);
        assert_eq!(
            report["claimMissing"],
            json!([
                ["modifier-matches-modality", 2],
                ["place-of-service", 1],
                ["procedure-code", 1],
                ["rendering-provider", 1]
            ])
        );
        // Consent: A, B, C decided on a telehealth Consent; A and B on a recording/AI one; F's
        // denial is the one refusal (F never started, so it is outside the capture denominators).
        assert_kpi(&report, "consent_telehealth_ratio", Some(1.0), 3, 3);
        assert_kpi(&report, "consent_ai_ratio", Some(2.0 / 3.0), 2, 3);
        assert_kpi(&report, "consent_denials", Some(1.0), 1, 0);
        assert_kpi(&report, "break_glass_grants", Some(1.0), 1, 0);
        assert_kpi(&report, "break_glass_pending_reviews", Some(1.0), 1, 0);
        // Sync: one 429; two retries (A's Observation, C's replayed Condition); nothing left.
        assert_kpi(&report, "throttled_attempts", Some(1.0), 1, 0);
        assert_kpi(&report, "retry_attempts", Some(2.0), 2, 0);
        assert_kpi(&report, "dead_letters", Some(0.0), 0, 0);
        assert_kpi(&report, "queue_depth", Some(0.0), 0, 0);
        // NPS: 10 and 9 promote, 8 is passive, 3 detracts: (2 − 1) / 4 = +25. The second answer
        // within 30 days was refused (409) and the dismissal has no score.
        assert_kpi(&report, "clinician_nps", Some(25.0), 1, 4);

        // Read-back accuracy and the latency quantile, from the raw delivery rows.
        let (mut sent, mut kept, mut slowest) = (0, 0, Vec::new());
        let mut by_resource: std::collections::BTreeMap<(String, String), (i64, i64)> = Default::default();
        for key in ["A", "B", "C", "D", "E", "F"] {
            let rows = env.store.deliveries_for_visit(TENANT, &v(key)).await.unwrap();
            let mut worst = None;
            for d in rows.iter().filter(|d| d.status == "done") {
                if let Some(rb) = &d.readback {
                    let rb: Value = serde_json::from_str(rb).unwrap();
                    sent += rb["fieldsSent"].as_i64().unwrap();
                    kept += rb["fieldsKept"].as_i64().unwrap();
                    let slot = by_resource.entry((d.connection_id.clone(), d.resource_type.clone())).or_default();
                    slot.0 += rb["fieldsSent"].as_i64().unwrap();
                    slot.1 += rb["fieldsKept"].as_i64().unwrap();
                }
                let ms = d.completed_at.unwrap() - d.created_at;
                worst = Some(worst.map_or(ms, |w: i64| w.max(ms)));
            }
            slowest.extend(worst);
        }
        assert!(sent > 0);
        assert_kpi(&report, "data_accuracy_ratio", Some(kept as f64 / sent as f64), kept, sent);
        let p95 = nearest_rank(slowest.clone(), 0.95);
        assert_kpi(&report, "delivery_seconds_p95", Some(p95 as f64 / 1000.0), p95, slowest.len() as i64);
        // Per connection and resource type, the same rows.
        let accuracy: Vec<Value> = by_resource
            .iter()
            .map(|((connection, resource_type), (sent, kept))| {
                json!({"connection": connection, "resource_type": resource_type,
                       "figure": {"id": "data_accuracy_ratio", "value": *kept as f64 / *sent as f64, "numerator": kept, "denominator": sent}})
            })
            .collect();
        assert!(accuracy.len() >= 3, "Encounter, Observation, Condition …: {accuracy:?}");
        assert_eq!(report["accuracyByResource"], json!(accuracy));

        // The same visits asked for by whole days are summed from the daily rollups, not the
        // visit facts: every figure and every table must come out the same.
        let day = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%d").to_string();
        let days = format!("from={}&to={}", day(started_at - 86_400_000), day(env.clock.now_ms() + 86_400_000));
        let (status, by_days) =
            send(reqwest::Method::GET, format!("{}/analytics?{days}", env.api), &manager, &Value::Null).await;
        assert_eq!(status, 200, "{by_days}");
        for field in [
            "visits",
            "kpis",
            "byConnection",
            "byClinician",
            "byVisitType",
            "accuracyByResource",
            "claimMissing",
            "npsScores",
        ] {
            assert_eq!(
                by_days[field], report[field],
                "{field} over whole days (rollups) ≠ over the exact range (facts)"
            );
        }
        // Part-days at both ends (an hour in): the ends from the facts, the middle from the rollups.
        let hour_in = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms.div_euclid(86_400_000) * 86_400_000 + 3_600_000)
                .unwrap()
                .to_rfc3339()
                .replace('+', "%2B")
        };
        let mixed =
            format!("from={}&to={}", hour_in(started_at - 2 * 86_400_000), hour_in(env.clock.now_ms() + 86_400_000));
        let (_, by_parts) =
            send(reqwest::Method::GET, format!("{}/analytics?{mixed}", env.api), &manager, &Value::Null).await;
        assert_eq!(by_parts["kpis"], report["kpis"], "rollups + part-days ≠ facts");

        // Drill-down: the visits behind "not auto-logged" are C alone; behind a missing claim
        // item, the visits that miss it.
        let (_, drill) = send(
            reqwest::Method::GET,
            format!("{}/analytics/visits?{range}&drill=not-auto-logged", env.api),
            &manager,
            &Value::Null,
        )
        .await;
        assert_eq!(drill["total"], 1, "{drill}");
        assert_eq!(drill["visits"][0]["visit_id"], v("C").as_str(), "{drill}");
        let (_, drill) = send(
            reqwest::Method::GET,
            format!("{}/analytics/visits?{range}&drill=claim-missing:modifier-matches-modality", env.api),
            &manager,
            &Value::Null,
        )
        .await;
        let mut ids: Vec<&str> =
            drill["visits"].as_array().unwrap().iter().map(|x| x["visit_id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        let mut expected = vec![v("B"), v("C")];
        expected.sort_unstable();
        assert_eq!(ids, expected);

        // The same figures in the CSV and on /metrics (both over the default last 24 hours).
        let (status, csv) = get_text(format!("{}/analytics/kpis.csv", env.api), &manager).await;
        assert_eq!(status, 200, "{csv}");
        let (_, metrics) = get_text(format!("{}/metrics", env.server.base_url), &env.monitor_token).await;
        let (_, report24) = send(reqwest::Method::GET, format!("{}/analytics", env.api), &manager, &Value::Null).await;
        let rows: Vec<csv::StringRecord> =
            csv::Reader::from_reader(csv.as_bytes()).records().collect::<Result<_, _>>().unwrap();
        assert_eq!(rows.len(), report24["kpis"].as_array().unwrap().len());
        for k in report24["kpis"].as_array().unwrap() {
            let id = k["id"].as_str().unwrap();
            let row = rows.iter().find(|r| &r[0] == id).unwrap_or_else(|| panic!("{id} not in CSV"));
            let value = &row[3];
            let sample = metrics
                .lines()
                .find(|l| l.starts_with(&format!("telechart_kpi_{id}{{tenant=\"{TENANT}\",connection=\"all\"")))
                .map(|l| l.rsplit(' ').next().unwrap());
            match k["value"].as_f64() {
                Some(x) => {
                    assert!((value.parse::<f64>().unwrap() - x).abs() < 1e-6, "{id}: CSV {value} vs {x}");
                    assert!(
                        (sample.unwrap().parse::<f64>().unwrap() - x).abs() < 1e-6,
                        "{id}: /metrics {sample:?} vs {x}"
                    );
                }
                None => assert!(value.is_empty() && sample.is_none(), "{id}: {value:?} {sample:?}"),
            }
        }
        assert!(metrics.contains("# TYPE telechart_kpi_auto_logged_ratio gauge"), "{metrics}");
        promtool_check(&metrics);

        // The KPI bands alert through the audit alert sinks: auto-logged 2/3 is under 95 %; no
        // dead letter is left and every started visit's telehealth consent was captured.
        let sink = env.dir.path().join("kpi-alerts.ndjson");
        let mut runner = telechart_sync::alerts::AlertRunner::new(
            env.store.clone(),
            env.clock.clone(),
            telechart_sync::alerts::AlertRules::default(),
            vec![telechart_sync::alerts::AlertSink::File(sink.clone())],
            telechart_policy::EgressRegistry::default(),
        )
        .unwrap()
        .with_kpi_bands(telechart_analytics::bands::default_bands());
        let fired = runner.evaluate_bands().await.unwrap();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].detail, "auto_logged_ratio 0.666667 below 0.95 over the last 60 min");
        assert!(runner.evaluate_bands().await.unwrap().is_empty(), "once a minute, and once per breach");
        env.clock.advance(std::time::Duration::from_secs(61));
        assert!(runner.evaluate_bands().await.unwrap().is_empty(), "still the same breach");
        runner.send().await.unwrap();
        let sent = std::fs::read_to_string(&sink).unwrap();
        assert!(sent.contains("\"rule\":\"kpi-band\"") && sent.contains("auto_logged_ratio"), "{sent}");

        // Who may look: a platform may not; a clinician sees their own visits only, and an
        // account linked to no Practitioner has none (said so, figures empty).
        let (status, _) = env.get(&format!("{}/analytics", env.api)).await;
        assert_eq!(status, 403);
        let (_, doc) = env.store.create_api_token(TENANT, "doc", "clinician", 0).await.unwrap();
        let (status, reply) =
            send(reqwest::Method::GET, format!("{}/analytics?{range}", env.api), doc.expose(), &Value::Null).await;
        assert_eq!((status, reply["visits"].as_i64()), (200, Some(0)), "{reply}");
        assert!(reply["message"].as_str().unwrap().contains("linked to no Practitioner"), "{reply}");
        let (status, _) = send(
            reqwest::Method::GET,
            format!("{}/analytics?clinician=Practitioner/someone-else", env.api),
            doc.expose(),
            &Value::Null,
        )
        .await;
        assert_eq!(status, 403, "a clinician may not ask for another's figures");
        env.stop().await;
    }
}

#[tokio::test]
async fn bad_filters_get_a_clear_message_and_empty_figures_never_a_500() {
    let env = TestEnv::start(Engine::Sqlite).await;
    env.full_visit(0).await;
    let (_, manager) = env.store.create_api_token(TENANT, "practice manager", "manager", 0).await.unwrap();
    let manager = manager.expose().to_owned();
    for (query, field, words) in [
        ("from=2026-12-08&to=2026-12-07", "to", "the time range is empty"),
        ("from=2026-12-07T10:00:00Z&to=2026-12-07T10:00:00Z", "to", "the time range is empty"),
        ("from=last-tuesday", "from", "is not a date"),
        ("from=2020-01-01&to=2026-01-01", "from", "longer than 400 days"),
        ("connection=no-such-ehr", "connection", "no visit has \\\"no-such-ehr\\\""),
        ("visitType=zumba", "visitType", "no visit has"),
        ("colour=blue", "colour", "unknown parameter"),
    ] {
        let (status, outcome) =
            send(reqwest::Method::GET, format!("{}/analytics?{query}", env.api), &manager, &Value::Null).await;
        assert_eq!(status, 422, "{query}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["expression"][0], field, "{query}: {outcome}");
        assert!(outcome.to_string().contains(words), "{query}: {outcome}");
        // The dashboard says why, with its charts drawn empty.
        let (status, page) = get_text(format!("{}/workspace/analytics?{query}", env.server.base_url), &manager).await;
        assert_eq!(status, 422, "{query}");
        assert!(page.contains("id=\"analytics-error\""), "{query}: {page}");
        assert_eq!(page.matches("<svg").count(), 4, "{query}");
    }
    // A range without visits: every ratio empty (no division by zero), and the page says so.
    let (status, report) = send(
        reqwest::Method::GET,
        format!("{}/analytics?from=2020-01-01&to=2020-01-02", env.api),
        &manager,
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["visits"], 0);
    assert!(report["message"].as_str().unwrap().contains("No visits"), "{report}");
    for k in report["kpis"].as_array().unwrap() {
        if k["unit"] == "ratio" || k["unit"] == "seconds" || k["unit"] == "words" || k["unit"] == "score" {
            assert!(k["value"].is_null(), "{k}");
        }
    }
    let (status, page) =
        get_text(format!("{}/workspace/analytics?from=2020-01-01&to=2020-01-02", env.server.base_url), &manager).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"analytics-empty\"") && !page.contains("NaN"), "{page}");
    let (status, csv) =
        get_text(format!("{}/analytics/kpis.csv?from=2020-01-01&to=2020-01-02", env.api), &manager).await;
    assert_eq!(status, 200);
    assert!(csv.lines().any(|l| l.starts_with("auto_logged_ratio,") && l.contains(",ratio,,0,0,")), "{csv}");
    // Unknown drill-downs and offsets are named.
    for (query, field) in [("drill=everything", "drill"), ("drill=all&offset=-3", "offset"), ("format=xml", "format")] {
        let (status, outcome) =
            send(reqwest::Method::GET, format!("{}/analytics/visits?{query}", env.api), &manager, &Value::Null).await;
        assert_eq!(status, 422, "{query}: {outcome}");
        assert_eq!(outcome["issue"][0]["expression"][0], field, "{query}: {outcome}");
    }
    // A survey score outside 0–10.
    let (_, doc) = env.store.create_api_token(TENANT, "doc", "clinician", 0).await.unwrap();
    let (status, outcome) =
        send(reqwest::Method::POST, format!("{}/surveys/nps", env.api), doc.expose(), &json!({"score": 11})).await;
    assert_eq!(status, 422, "{outcome}");
    env.stop().await;
}

/// The dashboard in a real headless Chromium, signed in as a practice manager: the replayed
/// stream's figures on the page with their charts, a screenshot kept, the auto-logged figure
/// clicked through to the one visit behind it; a clinician's own dashboard shows their visits
/// only. axe-core finds no serious or critical WCAG 2.1 A/AA violation on either page.
#[tokio::test]
async fn the_dashboard_in_a_browser_drills_down_to_the_visits_behind_a_figure() {
    use fantoccini::{ClientBuilder, Locator};
    let Some((_driver, webdriver)) = crate::browser::start_driver().await else { return };
    let env = TestEnv::start_with_platforms(Engine::Sqlite, platforms()).await;
    let (_, admin) = env.store.create_api_token(TENANT, "integration", "integration-admin", 0).await.unwrap();
    let r = replay(&env, admin.expose()).await;
    let now = env.clock.now_ms();
    let limits = telechart_store::SessionLimits { idle_ms: 3_600_000, absolute_ms: 3_600_000 };
    let manager = env.store.add_user(TENANT, "urn:test", "manager-1", "manager", now).await.unwrap();
    let (manager_cookie, _) = env.store.create_session(&manager, false, limits, now).await.unwrap();

    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1280,2400",
        format!("--user-data-dir={}", profile.path().display())]}});
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    let browser = ClientBuilder::rustls().unwrap().capabilities(capabilities).connect(&webdriver).await.unwrap();
    let base = env.server.base_url.clone();
    let sign_in = |secret: String| {
        let browser = browser.clone();
        let base = base.clone();
        async move {
            browser.goto(&format!("{base}/healthz")).await.unwrap();
            browser.delete_all_cookies().await.unwrap();
            // As the login would set it (WebDriver's add-cookie refuses an IP address domain).
            let cookie = format!("{}={secret}; path=/", telechart_server::SESSION_COOKIE);
            browser.execute("document.cookie = arguments[0];", vec![json!(cookie)]).await.unwrap();
        }
    };
    sign_in(manager_cookie).await;
    browser.goto(&format!("{base}/workspace/analytics")).await.unwrap();
    let text = |css: &'static str| {
        let browser = browser.clone();
        async move {
            browser
                .wait()
                .at_most(std::time::Duration::from_secs(10))
                .for_element(Locator::Css(css))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(text("h1").await, "Virtual care analytics");
    assert_eq!(text("#visit-count").await, "6");
    assert!(text("#kpi-auto_logged_ratio").await.contains("66.7 %"), "{}", text("#kpi-auto_logged_ratio").await);
    assert!(text("#kpi-clinician_nps").await.contains("+25"));
    assert_eq!(browser.find_all(Locator::Css("figure svg")).await.unwrap().len(), 4);
    let shot = browser.screenshot().await.unwrap();
    assert!(shot.starts_with(b"\x89PNG") && shot.len() > 20_000, "a screenshot of {} bytes", shot.len());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("analytics-dashboard.png");
    std::fs::write(&path, &shot).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());
    crate::portal::assert_accessible(&browser, "the analytics dashboard").await;

    // The figure is a link to the visits behind it: C, the replayed one.
    browser.find(Locator::Css("#kpi-auto_logged_ratio a.value")).await.unwrap().click().await.unwrap();
    assert!(
        text("#drill-summary").await.starts_with("1 visits match “not-auto-logged”"),
        "{}",
        text("#drill-summary").await
    );
    let rows = browser.find_all(Locator::Css("tr.drill-visit")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].text().await.unwrap().contains(&r.visits["C"]));
    crate::portal::assert_accessible(&browser, "the visits behind a figure").await;
    // …and from there to the visit's own page.
    let href = browser.find(Locator::Css("tr.drill-visit a")).await.unwrap().attr("href").await.unwrap();
    assert_eq!(href, Some(format!("/workspace/visits/{}", r.visits["C"])));

    // A clinician linked to A's Practitioner sees only their own visits, with no clinician menu.
    let (_, a) = env.get(&format!("{}/visits/{}", env.api, r.visits["A"])).await;
    let practitioner = a["practitioner"].as_str().unwrap().to_owned();
    let mut theirs = 0;
    for id in r.visits.values() {
        let (_, v) = env.get(&format!("{}/visits/{id}", env.api)).await;
        theirs += i32::from(v["practitioner"] == practitioner.as_str());
    }
    let clinician = env.store.add_user(TENANT, "urn:test", "clinician-1", "clinician", now).await.unwrap();
    env.store.link_fhir_user(TENANT, &clinician.id, &practitioner).await.unwrap();
    let (clinician_cookie, _) = env.store.create_session(&clinician, true, limits, now).await.unwrap();
    sign_in(clinician_cookie).await;
    browser.goto(&format!("{base}/workspace/analytics")).await.unwrap();
    assert_eq!(text("#own-scope").await, "Your own visits.");
    assert_eq!(text("#visit-count").await, theirs.to_string());
    assert!(browser.find(Locator::Css("select#clinician")).await.is_err(), "no clinician menu");
    crate::portal::assert_accessible(&browser, "a clinician's own dashboard").await;
    browser.close().await.unwrap();
    env.stop().await;
}
