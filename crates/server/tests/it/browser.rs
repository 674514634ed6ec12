//! A clinician's click, in a real headless Chromium (Debian's chromium + chromium-driver, driven
//! over W3C WebDriver): the EHR's schedule → "Start video visit" on the second appointment →
//! the Telechart workspace for that patient → arrive, vitals, call, note, finish → the Encounter
//! and Observations are in the EHR.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::launch::{LaunchEnv, launch_env};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver on a free port, or None (with a notice) where Chromium is not installed —
/// unless `TELECHART_REQUIRE_BROWSER=1` (CI), where that is a failure.
async fn start_driver() -> Option<(Driver, String)> {
    let installed =
        std::path::Path::new("/usr/bin/chromium").exists() && std::path::Path::new("/usr/bin/chromedriver").exists();
    if !installed {
        assert!(
            std::env::var("TELECHART_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "chromium and chromium-driver are required: apt-get install chromium chromium-driver"
        );
        eprintln!("note: chromium not installed; browser test skipped");
        return None;
    }
    let port = free_port();
    let driver = Driver(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok_and(|r| r.status().is_success()) {
            return Some((driver, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

#[tokio::test]
async fn a_clinician_starts_the_second_visit_from_the_ehr_schedule_and_charts_it() {
    let Some((_driver, webdriver)) = start_driver().await else { return };
    let LaunchEnv { store, sandbox, server, base: _, _dir } = launch_env(true).await;
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", format!("--user-data-dir={}", profile.path().display())]
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
    let browser = ClientBuilder::rustls().unwrap().capabilities(capabilities).connect(&webdriver).await.unwrap();

    let ehr = sandbox.root.clone();
    browser.goto(&format!("{ehr}/ehr/schedule")).await.unwrap();
    let starts = browser.find_all(Locator::Css("a.start")).await.unwrap();
    assert!(starts.len() >= 3, "several appointments on the schedule");
    let appointment = sandbox.sandbox.appointment_ids()[1].clone();
    let appt: serde_json::Value =
        reqwest::get(format!("{}/Appointment/{appointment}", sandbox.fhir_base)).await.unwrap().json().await.unwrap();
    let patient = appt["participant"][0]["actor"]["reference"].as_str().unwrap().to_owned();
    starts[1].click().await.unwrap();
    // The EHR asks the clinician to approve Telechart's access, as a real authorize step does.
    let approve = browser.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("approve")).await.unwrap();
    approve.click().await.unwrap();

    let banner =
        browser.wait().at_most(Duration::from_secs(20)).for_element(Locator::Id("patient-banner")).await.unwrap();
    let banner_text = banner.text().await.unwrap();
    let name = crate::launch::patient_name(&sandbox, &patient).await;
    assert!(banner_text.contains(&name) && banner_text.contains(&appointment), "{banner_text}");
    assert!(browser.current_url().await.unwrap().path().starts_with("/workspace/visits/"));

    let click = |id: &'static str| {
        let browser = browser.clone();
        async move {
            let button = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id(id)).await.unwrap();
            button.click().await.unwrap();
            // The form posts and the page reloads: wait until the clicked button is gone from
            // the document before looking for the next one.
            for _ in 0..100 {
                if button.is_displayed().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the page did not reload after clicking {id}");
        }
    };
    click("to-arrived").await;
    for (field, value) in [("systolic", "124"), ("diastolic", "79"), ("heart_rate", "71"), ("spo2", "98")] {
        let input = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id(field)).await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    click("save-vitals").await;
    click("consent-telehealth-permit").await;
    click("to-in-progress").await;
    let title = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("note-title")).await.unwrap();
    title.send_keys("Video visit").await.unwrap();
    browser.find(Locator::Id("note-text")).await.unwrap().send_keys("Stable. Continue the plan.").await.unwrap();
    click("sign-note").await;
    click("to-finished").await;
    let state = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("visit-state")).await.unwrap();
    assert_eq!(state.text().await.unwrap(), "finished");
    browser.close().await.unwrap();

    let (encounter, observations) = crate::launch::deliver_and_read_back(&store, &sandbox, &appointment).await;
    assert_eq!(encounter["status"], "finished");
    assert_eq!(observations["total"], 3, "BP panel, heart rate, SpO2");
    server.shutdown().await;
    sandbox.shutdown().await;
}
