use std::path::Path;
use std::process::Command;

fn telechart(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telechart"));
    command.current_dir(cwd);
    for (key, _) in std::env::vars() {
        if key.starts_with("TELECHART_") {
            command.env_remove(key);
        }
    }
    command
}

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn config_prints_the_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("telechart.toml"), "tenant = \"clinic-7\"\n[worker]\nconcurrency = 4\n").unwrap();
    let out = telechart(dir.path())
        .arg("config")
        .env("TELECHART_DATABASE_URL", "postgres://tc:hunter2@db.internal:5432/tc")
        .env("TELECHART_WORKER__LEASE_SECONDS", "90")
        // Variables of the prefix that are not settings are not configuration errors.
        .env("TELECHART_TEST_POSTGRES_URL", "postgres://x@y/z")
        .env("TELECHART_REQUIRE_POSTGRES", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(stdout.contains("postgres://tc:****@db.internal:5432/tc"), "{stdout}");
    assert!(stdout.contains("tenant = \"clinic-7\""), "file overrides defaults: {stdout}");
    assert!(stdout.contains("concurrency = 4"), "{stdout}");
    assert!(stdout.contains("lease_seconds = 90"), "environment overrides the file: {stdout}");
}

#[test]
fn with_no_configuration_the_database_is_embedded_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let out = telechart(dir.path()).arg("config").output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("database_url = \"sqlite:./telechart-data/telechart.db\""), "{stdout}");
    // And it works: the queue is readable on a fresh embedded database.
    let out = telechart(dir.path()).args(["queue", "status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("telechart-data/telechart.db").exists());
}

#[test]
fn bad_configuration_is_refused_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = telechart(dir.path()).arg("config").env("TELECHART_WORKER__CONCURRENCY", "0").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker.concurrency must be at least 1"));

    std::fs::write(dir.path().join("telechart.toml"), "databse_url = \"sqlite:x.db\"\n").unwrap();
    let out = telechart(dir.path()).arg("config").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("databse_url"), "{stderr}");

    let out = telechart(dir.path()).args(["--config", "missing.toml", "config"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("config file missing.toml does not exist"));
}

#[test]
fn the_demo_charts_every_visit_and_exports_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("written.ndjson");
    let sent = dir.path().join("sent.ndjson");
    let out = telechart(&workspace())
        .args(["demo", "--visits", "3", "--export"])
        .arg(&written)
        .arg("--export-sent")
        .arg(&sent)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // 28 per visit: 26 chart writes (the drafted note's Provenance, and the signed care plan's
    // two Goals, CarePlan and after-visit summary among them), the telehealth Consent and the
    // recording consent form the patient signed through a link.
    assert!(stdout.contains("delivered   84 / 84 (100.0 %)"), "{stdout}");
    assert!(stdout.contains("dead        0"), "{stdout}");
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let written = lines(&written);
    // Per visit: one Encounter (five versions of it), eight Observations, seven DocumentReferences
    // (consent form, recording consent form signed through a link, chat transcript, photo, note,
    // video transcript, after-visit summary), two Consents (telehealth, from the signed PDF;
    // recording and AI, from the form signed through the link), two Conditions, the signed care
    // plan's CarePlan and two Goals, one lab ServiceRequest (completed by the sandbox's lab and
    // read back), and the drafted-then-signed note's Provenance.
    assert_eq!(written.len(), 75);
    let provenance: Vec<&serde_json::Value> = written.iter().filter(|r| r["resourceType"] == "Provenance").collect();
    assert_eq!(provenance.len(), 3);
    for p in &provenance {
        let target = p["target"][0]["reference"].as_str().unwrap().trim_start_matches("DocumentReference/");
        let note = written.iter().find(|r| r["resourceType"] == "DocumentReference" && r["id"] == target).unwrap();
        assert_eq!(
            (note["type"]["coding"][0]["code"].as_str(), note["docStatus"].as_str()),
            (Some("11506-3"), Some("final"))
        );
        let sources: Vec<&str> =
            p["entity"].as_array().unwrap().iter().map(|e| e["what"]["reference"].as_str().unwrap()).collect();
        assert!(sources.iter().any(|s| s.starts_with("DocumentReference/")), "the transcript: {p}");
    }
    assert_eq!(written.iter().filter(|r| r["resourceType"] == "CarePlan").count(), 3);
    assert_eq!(written.iter().filter(|r| r["resourceType"] == "Goal").count(), 6);
    // Each CarePlan refers to what this EHR holds: the visit's Conditions, its Goals, its lab order.
    for plan in written.iter().filter(|r| r["resourceType"] == "CarePlan") {
        assert_eq!(plan["addresses"].as_array().map(Vec::len), Some(2), "{plan}");
        assert_eq!(plan["goal"].as_array().map(Vec::len), Some(2), "{plan}");
        let refers = |rtype: &str| {
            plan["activity"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["reference"]["reference"].as_str().is_some_and(|r| r.starts_with(&format!("{rtype}/"))))
        };
        assert!(refers("ServiceRequest"), "{plan}");
    }
    let consents: Vec<&serde_json::Value> = written.iter().filter(|r| r["resourceType"] == "Consent").collect();
    assert_eq!(consents.len(), 6);
    let from_forms: Vec<&&serde_json::Value> =
        consents.iter().filter(|c| c["sourceReference"]["reference"].is_string()).collect();
    assert_eq!(from_forms.len(), 6, "the signed forms' Consents name their DocumentReference");
    assert!(
        from_forms
            .iter()
            .all(|c| c["sourceReference"]["reference"].as_str().unwrap().starts_with("DocumentReference/"))
    );
    assert!(stdout.contains("Orders: 3 / 3 lab orders completed in the EHR"), "{stdout}");
    assert!(stdout.contains("Claim-ready visits: 3 / 3"), "{stdout}");
    assert!(stdout.contains("appointment.booked"), "{stdout}");
    let orders: Vec<&serde_json::Value> = written.iter().filter(|r| r["resourceType"] == "ServiceRequest").collect();
    assert!(orders.len() == 3 && orders.iter().all(|o| o["status"] == "completed"));
    let conditions: Vec<&serde_json::Value> = written.iter().filter(|r| r["resourceType"] == "Condition").collect();
    assert_eq!(conditions.len(), 6);
    assert!(conditions.iter().all(|c| c["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"));
    for encounter in written.iter().filter(|r| r["resourceType"] == "Encounter") {
        let listed: Vec<&str> = encounter["diagnosis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["condition"]["reference"].as_str().unwrap())
            .collect();
        assert_eq!(listed.len(), 2, "{encounter}");
        for reference in listed {
            let id = reference.trim_start_matches("Condition/");
            let condition = conditions.iter().find(|c| c["id"] == id).expect("the Encounter lists a Condition written");
            assert_eq!(condition["encounter"]["reference"], format!("Encounter/{}", encounter["id"].as_str().unwrap()));
        }
    }
    assert_eq!(written.iter().filter(|r| r["resourceType"] == "Observation").count(), 24);
    let documents: Vec<&serde_json::Value> =
        written.iter().filter(|r| r["resourceType"] == "DocumentReference").collect();
    let mut types: Vec<&str> = documents.iter().map(|d| d["type"]["coding"][0]["code"].as_str().unwrap()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(
        types,
        ["11506-3", "34109-9", "34133-9", "59284-0", "72170-4"],
        "progress note, note, summary, consent, photo"
    );
    assert!(documents.iter().all(|d| d["context"]["encounter"][0]["reference"].is_string()));
    // The forms signed through a link: the exact words read, their version and the signature.
    let signed: Vec<String> = documents
        .iter()
        .filter(|d| d["content"][0]["attachment"]["contentType"].as_str().is_some_and(|t| t.starts_with("text/plain")))
        .filter_map(|d| {
            let data = d["content"][0]["attachment"]["data"].as_str()?;
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).ok()?;
            String::from_utf8(bytes).ok().filter(|t| t.contains("Signed electronically by: "))
        })
        .collect();
    assert_eq!(signed.len(), 3, "one per visit");
    assert!(signed.iter().all(|t| t.contains("recording-ai, version 2026-12") && t.contains("Decision: agreed")));
    let sent = lines(&sent);
    assert_eq!(sent.len(), 84, "every delivery sent exactly once");
}

#[test]
fn the_demo_against_every_vendor_prints_how_each_artifact_got_there() {
    let out = telechart(&workspace()).args(["demo", "--vendor", "all", "--visits", "2"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let matrix = stdout.split("How each artifact reached each EHR").nth(1).expect("the matrix");
    let (cells, accuracy) = matrix.split_once("Read-back accuracy").expect("the accuracy table");
    // Artifact kind × vendor: every cell is a path taken, or a named absence of one.
    let mut rows: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = Default::default();
    let mut label = String::new();
    for line in cells.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        if !line.starts_with("      ") {
            label = line.trim().to_owned();
            continue;
        }
        let (vendor, cell) = line.trim().split_once(' ').unwrap();
        let cell = cell.trim().to_owned();
        assert!(
            ["written", "transformed: ", "fallback: ", "not deliverable: "].iter().any(|p| cell.starts_with(p)),
            "{label} × {vendor}: {cell}"
        );
        rows.entry(label.clone()).or_default().insert(vendor.to_owned(), cell);
    }
    assert_eq!(rows.len(), 16, "{rows:?}");
    assert!(rows.values().all(|r| r.len() == 4 && r["generic"] == "written"), "{rows:?}");
    let cell = |label: &str, vendor: &str| rows[label][vendor].clone();
    assert_eq!(cell("vital", "epic"), "written");
    assert_eq!(cell("vital", "athena"), "fallback: vitals API");
    assert_eq!(cell("note", "epic"), "transformed: content type text/plain");
    // The form the patient signed through a link is plain text: the vendor document API takes
    // it as a PDF.
    let signed = "document: consent form (signed through a link)";
    assert_eq!(cell(signed, "athena"), "fallback: document API (PDF)");
    assert_eq!(cell("note", "athena"), "fallback: document API (PDF)");
    assert_eq!(cell("diagnosis", "epic"), "transformed: verificationStatus provisional");
    assert_eq!(cell("encounter-status", "oracle"), "transformed: status by JSON Patch of Appointment.status");
    assert!(cell("document: photo (PNG)", "epic").starts_with("not deliverable: image/png documents"));
    assert!(cell("service-order", "oracle").starts_with("not deliverable: "));
    assert!(cell("provenance", "epic").starts_with("not deliverable: no Provenance create"));
    // Read-back: what each EHR kept of what was sent.
    let percent = |vendor: &str| -> f64 {
        let line = accuracy.lines().find(|l| l.trim_start().starts_with(vendor)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(percent("generic"), 100.0);
    assert_eq!(percent("athena"), 100.0);
    assert!(percent("oracle") < 100.0, "{accuracy}");
    assert!(accuracy.contains("device.reference dropped"), "{accuracy}");
}

#[test]
fn the_demo_refuses_zero_visits() {
    let out = telechart(&workspace()).args(["demo", "--visits", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--visits must be at least 1"));
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = telechart(dir.path()).arg("config").env("TELECHART_LISTEN", "0.0.0.0:8080").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing plain HTTP on 0.0.0.0:8080"));
    let out = telechart(dir.path())
        .arg("config")
        .env("TELECHART_LISTEN", "0.0.0.0:8080")
        .env("TELECHART_TLS__ALLOW_PLAIN_HTTP", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_fails_a_development_setup_and_passes_the_production_example() {
    let dir = tempfile::tempdir().unwrap();
    let out = telechart(dir.path()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for control in ["FAIL  tls", "FAIL  encryption-key", "FAIL  identifier-system"] {
        assert!(stdout.contains(control), "{control} in {stdout}");
    }

    // The production example, with the files it names made here.
    let kek = dir.path().join("kek");
    assert!(telechart(dir.path()).args(["keys", "generate", "--out"]).arg(&kek).status().unwrap().success());
    let certified = rcgen::generate_simple_self_signed(vec!["telechart.example".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let example = workspace().join("deploy/production.example.toml");
    let run = |kek: &Path| {
        telechart(dir.path())
            .arg("--config")
            .arg(&example)
            .arg("check")
            .env("TELECHART_KEYS__KEK_FILE", kek)
            .env("TELECHART_TLS__CERT_FILE", &cert)
            .env("TELECHART_TLS__KEY_FILE", &key)
            .output()
            .unwrap()
    };
    let out = run(&kek);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("10 controls, 0 failed"), "{stdout}");
    assert!(stdout.contains("PASS  baa-term"), "{stdout}");

    // The same BAA ending in ten days warns; ended yesterday, it fails (and egress-baa with it).
    let today = telechart_store::Clock::system().now().date_naive();
    let text = std::fs::read_to_string(&example).unwrap();
    for (expires, mark) in
        [(today + chrono::Duration::days(10), "WARN  baa-term"), (today - chrono::Duration::days(1), "FAIL  baa-term")]
    {
        let edited = dir.path().join("edited.toml");
        std::fs::write(&edited, text.replace("expires = \"2029-03-01\"", &format!("expires = \"{expires}\""))).unwrap();
        let out = telechart(dir.path())
            .arg("--config")
            .arg(&edited)
            .arg("check")
            .env("TELECHART_KEYS__KEK_FILE", &kek)
            .env("TELECHART_TLS__CERT_FILE", &cert)
            .env("TELECHART_TLS__KEY_FILE", &key)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(mark), "{mark}: {stdout}");
        assert_eq!(out.status.success(), mark.starts_with("WARN"), "{stdout}");
        if mark.starts_with("FAIL") {
            assert!(stdout.contains(&format!("BAA-2026-0042 expired on {expires}")), "{stdout}");
            assert!(stdout.contains("FAIL  egress-baa"), "{stdout}");
        }
    }

    // A key file others can read fails the check.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&kek);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  key-file-permissions"));
}

/// `telechart demo --serve` prints the EHR schedule and keeps it up: its second "Start video
/// visit" performs a real EHR launch of Telechart, which lands on the EHR's approve page.
#[test]
fn the_demo_serves_the_ehr_schedule_to_launch_from() {
    use std::io::BufRead;
    let mut child = telechart(&workspace())
        .args(["demo", "--visits", "1", "--serve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut schedule = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.trim().ends_with("/ehr/schedule") {
            schedule = Some(line.trim().to_owned());
            break;
        }
    }
    let schedule = schedule.expect("the demo printed the schedule URL");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let landed = runtime.block_on(async {
        let browser = reqwest::Client::new();
        let page = browser.get(&schedule).send().await.unwrap().text().await.unwrap();
        let starts: Vec<&str> = page.match_indices("href=\"/ehr/launch/").map(|(i, _)| &page[i + 6..]).collect();
        assert!(starts.len() >= 3, "{page}");
        let second = starts[1].split('"').next().unwrap();
        let root = schedule.trim_end_matches("/ehr/schedule");
        let response = browser.get(format!("{root}{second}")).send().await.unwrap();
        (response.status().as_u16(), response.url().path().to_owned(), response.text().await.unwrap())
    });
    let _ = child.kill();
    let _ = child.wait();
    let (status, path, html) = landed;
    assert_eq!((status, path.as_str()), (200, "/auth/authorize"), "{html}");
    assert!(html.contains("id=\"approve\"") && html.contains("launch"), "{html}");
}

/// `telechart connections show` reads a live EHR's CapabilityStatement, builds the contract with
/// the connection's vendor profile, keeps it once per change, and prints it.
#[test]
#[allow(clippy::disallowed_methods)] // a plain thread waiting for a child process: no runtime to block
fn connections_show_the_capability_contract_against_a_sandbox_personality() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sandbox = telechart(&workspace())
        .args(["sandbox", "--vendor", "epic", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(up, "the sandbox did not start");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("telechart.toml"),
        format!("[[connections]]\nid = \"ehr\"\nname = \"Epic-like\"\nprofile = \"epic\"\nbase_url = \"{base}\"\n"),
    )
    .unwrap();
    let show = |dir: &Path| {
        let out = telechart(dir).args(["connections", "show", "ehr"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let first = show(dir.path());
    assert!(first.starts_with("connection ehr, contract version 1"), "{first}");
    let (contract, plan) = first.split_once("\nwrite plan (profile epic):\n").expect("the write plan follows");
    let json: serde_json::Value = serde_json::from_str(contract.split_once('\n').unwrap().1).unwrap();
    assert_eq!(json["profile"], "epic");
    // Before any visit: how each kind of artifact will reach this EHR.
    let line = |what: &str| plan.lines().find(|l| l.trim_start().starts_with(what)).unwrap_or_default().to_owned();
    assert!(line("vital sign").ends_with(" written"), "{plan}");
    assert!(line("signed note").ends_with("transformed: content type text/plain"), "{plan}");
    assert!(line("document: image").contains("not deliverable: image/png documents"), "{plan}");
    assert!(line("care plan").contains("not deliverable: no CarePlan create"), "{plan}");
    assert!(line("drafted note's provenance").contains("not deliverable: no Provenance create"), "{plan}");
    assert_eq!(plan.lines().count(), 14, "{plan}");
    assert_eq!(json["resources"]["Encounter"]["create"], false, "Epic-like: the EHR's own Encounters only");
    assert_eq!(json["resources"]["Observation"]["create"], true);
    assert!(show(dir.path()).starts_with("connection ehr, contract version 1"), "unchanged: same version");
    let list = telechart(dir.path()).args(["connections", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("contract v1"));
    let _ = sandbox.kill();
    let _ = sandbox.wait();
}

/// Fifty visits with the EHR's 429s, a refused Condition replayed by an integration admin and a
/// patient denying telehealth consent: the demo itself fails unless the dashboard, /metrics and
/// the CSV agree on every KPI; the figures are the ones those faults must give. Then the same
/// database through `telechart analytics export` and `report --day`, and bad filters refused.
#[test]
fn the_demo_with_faults_gives_the_same_figures_on_the_dashboard_metrics_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("demo.db").display());
    let out =
        telechart(&workspace()).args(["demo", "--visits", "50", "--faults", "--database-url", &db]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("dashboard, /metrics and the CSV agree on all 24 KPIs"), "{stdout}");
    // The replayed visit is the one not auto-logged; every visit is still claim-ready.
    assert!(stdout.contains("auto-logged in the EHR   98.0 % (49 of 50)"), "{stdout}");
    assert!(stdout.contains("clean-claim ready        100.0 % (50 of 50)"), "{stdout}");
    assert!(stdout.contains("consent denials 1 · HTTP 429s 6 · retries 7 · dead letters now 0"), "{stdout}");

    let kek = dir.path().join("kek");
    assert!(telechart(dir.path()).args(["keys", "generate", "--out"]).arg(&kek).status().unwrap().success());
    let run = |args: &[&str]| {
        telechart(dir.path())
            .env("TELECHART_DATABASE_URL", &db)
            .env("TELECHART_KEYS__KEK_FILE", &kek)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["analytics", "export"]);
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("auto_logged_ratio,Auto-logged in the EHR,ratio,0.98,49,50,")), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("throttled_attempts,EHR throttling (HTTP 429),count,6,6,0,")), "{csv}");
    let out = run(&["analytics", "export", "--visits", "not-auto-logged"]);
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(rows.lines().count(), 2, "a header and the replayed visit: {rows}");
    assert!(rows.lines().nth(1).unwrap().contains(",finished,"), "{rows}");
    let today = telechart_store::Clock::system().now().format("%Y-%m-%d").to_string();
    let out = run(&["analytics", "report", "--day", &today]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    assert!(report.contains("Auto-logged in the EHR") && report.contains("98.0 %  (49 of 50)"), "{report}");
    for (args, message) in [
        (&["analytics", "export", "--from", "2026-12-09", "--to", "2026-12-08"][..], "the time range is empty"),
        (&["analytics", "export", "--connection", "nope"][..], "connection: no visit has \"nope\""),
        (&["analytics", "export", "--visits", "bogus"][..], "unknown drill-down \"bogus\""),
        (&["analytics", "report", "--day", "someday"][..], "is not a date"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The site blueprint against a deployment of two EHRs: each visit type's artifacts planned per
/// connection (Epic takes no CarePlan); a blueprint with mistakes is refused, each one named.
#[test]
fn the_blueprint_check_prints_each_visit_types_plan_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("telechart.toml"),
        "[[connections]]\nid = \"main\"\nname = \"Main\"\nprofile = \"generic\"\nbase_url = \"https://ehr.example/fhir\"\n\
         [[connections]]\nid = \"epic\"\nname = \"Epic\"\nprofile = \"epic\"\nbase_url = \"https://epic.example/fhir\"\n",
    )
    .unwrap();
    let example = std::fs::read_to_string(workspace().join("deploy/blueprint.example.toml")).unwrap();
    let good = example.replace("connections = [\"main-ehr\"]", "connections = [\"main\", \"epic\"]");
    std::fs::write(dir.path().join("site.toml"), &good).unwrap();
    let out = telechart(dir.path()).args(["blueprint", "check", "site.toml"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let followup = stdout.split("visit type \"behavioral-health\"").next().unwrap();
    let epic = followup.split("→ epic (epic)").nth(1).unwrap();
    assert!(epic.lines().any(|l| l.trim_start().starts_with("care-plan") && l.contains("not deliverable")), "{epic}");
    let main = followup.split("→ main (generic)").nth(1).unwrap().split("→ epic").next().unwrap();
    assert!(main.lines().any(|l| l.trim_start().starts_with("care-plan") && l.ends_with("written")), "{main}");
    assert!(stdout.contains("auto_logged_ratio            below 0.95 over 60 min"), "{stdout}");

    let bad = good
        .replace("template = \"general-follow-up\"", "template = \"nonesuch\"")
        .replace("required_consents = [\"telehealth\", \"recording-ai\"]", "required_consents = [\"telepathy\"]")
        .replace(
            "connections = [\"main\", \"epic\"]\nartifacts = [\"encounter-status\", \"vital\"",
            "connections = [\"nowhere\"]\nartifacts = [\"hologram\", \"vital\"",
        )
        .replace("manager = [\"analytics:all\"]", "manager = [\"visit:open\"]")
        .replace("below = 0.95", "below = 95");
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let out = telechart(dir.path()).args(["blueprint", "check", "bad.toml"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for problem in [
        "visit_type[0] (followup).template: no template \"nonesuch\"",
        "visit_type[0] (followup).required_consents: \"telepathy\" is not a consent category",
        "visit_type[0] (followup).connections: \"nowhere\" is not a configured [[connections]] id",
        "visit_type[0] (followup).artifacts: \"hologram\" is not an artifact kind",
        "roles.manager: the manager role does not have visit:open",
        "band 1: 95 is not a bound for auto_logged_ratio",
    ] {
        assert!(stderr.contains(problem), "{problem}: {stderr}");
    }
    std::fs::write(dir.path().join("broken.toml"), "site = \"x\"\n[[visit_type]]\ncode = 3\n").unwrap();
    let out = telechart(dir.path()).args(["blueprint", "check", "broken.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.toml"));
}
