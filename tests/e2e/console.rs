//! The auditor's console in a real headless Chromium (issue 18): `tio console` runs as
//! its own process, a client of the real broker over mutual TLS with the auditor's
//! certificate; the browser, driven through chromedriver, sees the overview verify the
//! latest checkpoint against the pinned key, and searches the audit log by NHS number
//! sent in the form's body, never in the address, the child shown masked, and shows a
//! child's subject-access report. The console's reads are audited by the broker as the
//! auditor and the person named.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use tio_proto::v1;

use crate::support::records::*;
use crate::support::{Sandbox, arg, tio_binary};

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound and let go; the tiny race is the test's own).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts chromedriver on a loopback port and waits (at most 20 s) until it answers.
fn chromedriver() -> (Running, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot start chromedriver ({err}): run tests/run, which installs chromium and chromium-driver with apt"
            )
        });
    let running = Running(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    (running, format!("http://127.0.0.1:{port}"))
}

/// Starts `tio console` as certificate `name` of the sandbox's PKI; returns it and its
/// address (`http://127.0.0.1:PORT/`).
fn start_console(sandbox: &Sandbox, name: &str, extra: &[&str]) -> (Running, String) {
    let server = format!("https://localhost:{}", sandbox.address.port());
    let pki = arg(&sandbox.pki.dir);
    let mut console = Command::new(tio_binary())
        .args(["console", "--listen", "127.0.0.1:0", "--server", &server, "--dev-pki", &pki, "--as", name])
        .args(["--professional", "dpo-evans"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = console.stdout.take().unwrap();
    let console = Running(console);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url =
        line.trim().strip_prefix("console: ").unwrap_or_else(|| panic!("no address printed: {line:?}")).to_owned();
    (console, url)
}

/// A headless Chromium session through chromedriver.
async fn browser(driver_url: &str) -> fantoccini::Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url)
        .await
        .expect("a headless chromium session (tests/run installs chromium and chromium-driver)")
}

#[test]
fn the_console_verifies_the_checkpoint_and_searches_the_log_without_the_nhs_number_in_the_address() {
    let sandbox = Sandbox::start();
    let runtime = runtime();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    let kept = runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let school = as_professional(&sandbox, "school").await;
        publish(
            &hospital,
            publish_request(AMY, v1::Category::CommunicationNeeds, communication_needs("Makaton"), "c-1"),
        )
        .await
        .unwrap();
        // Refused: the school is not involved (the consent names the education sector).
        hospital
            .consents()
            .record_consent(hospital.request(consent_request(&[v1::Category::CommunicationNeeds])))
            .await
            .unwrap();
        assert!(profile(&school, AMY).await.is_empty());
        let auditor = sandbox.client("auditor").await;
        let key = auditor.audit().get_public_key(auditor.request(v1::GetPublicKeyRequest {})).await.unwrap();
        std::fs::write(key_file.path(), key.into_inner().verifier_key).unwrap();
        // Wait for a checkpoint that covers the entries (sequenced within half a second),
        // and keep it, as an auditor would.
        for _ in 0..100 {
            let checkpoint = auditor.audit().get_checkpoint(auditor.request(v1::GetCheckpointRequest {})).await;
            if let Ok(checkpoint) = checkpoint.map(tonic::Response::into_inner)
                && checkpoint.tree_size >= 3
            {
                return checkpoint.signed_note;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no checkpoint covered the first entries within 10 s");
    });

    let key = arg(key_file.path());
    let (console, url) = start_console(&sandbox, "auditor", &["--public-key", &key]);
    let (_driver, driver_url) = chromedriver();

    runtime.block_on(async {
        let browser = browser(&driver_url).await;

        browser.goto(&url).await.unwrap();
        let verdict = browser.find(Locator::Id("verdict")).await.unwrap().text().await.unwrap();
        assert_eq!(verdict, "Verified with your pinned key");
        let size: u64 = browser.find(Locator::Id("tree-size")).await.unwrap().text().await.unwrap().parse().unwrap();
        assert!(size >= 3, "{size}");
        // The stylesheet comes from the console itself.
        let css = browser.find(Locator::Css("link[rel=stylesheet]")).await.unwrap().attr("href").await.unwrap();
        assert_eq!(css.as_deref(), Some("/assets/nhsuk-frontend.min.css"));

        browser.goto(&format!("{url}audit")).await.unwrap();
        browser.find(Locator::Id("nhs_number")).await.unwrap().send_keys("999 007 9196").await.unwrap();
        browser.find(Locator::Css("#outcome option[value=denied]")).await.unwrap().click().await.unwrap();
        browser.find(Locator::Id("search")).await.unwrap().click().await.unwrap();
        let table = browser.wait().for_element(Locator::Id("entries")).await.unwrap().text().await.unwrap();
        assert!(table.contains("read the profile"), "{table}");
        assert!(table.contains("*** *** 9196"), "the child masked: {table}");
        assert!(!table.contains("9990079196"), "{table}");
        let address = browser.current_url().await.unwrap();
        assert!(!address.as_str().contains("9196"), "the NHS number must not be in the address: {address}");

        // An entry's page proves it is in a signed checkpoint, under the pinned key.
        browser.find(Locator::Css("#entries tbody tr td a")).await.unwrap().click().await.unwrap();
        let proof = browser.wait().for_element(Locator::Id("proof")).await.unwrap().text().await.unwrap();
        assert!(proof.starts_with("In the log: proved in the checkpoint of"), "{proof}");
        assert!(proof.ends_with("signed with your pinned key"), "{proof}");
        let canonical = browser.find(Locator::Id("canonical")).await.unwrap().text().await.unwrap();
        assert!(canonical.contains("\"action\": \"profile_read\""), "{canonical}");
        assert!(!canonical.contains("9990079196"), "nothing personal in plain text: {canonical}");

        // Integrity: the checkpoint kept at the start is still in today's log; a
        // tampered one does not verify.
        browser.goto(&format!("{url}integrity")).await.unwrap();
        browser.find(Locator::Id("kept")).await.unwrap().send_keys(&kept).await.unwrap();
        browser.find(Locator::Id("compare")).await.unwrap().click().await.unwrap();
        let verdict = browser.wait().for_element(Locator::Id("integrity")).await.unwrap().text().await.unwrap();
        assert!(verdict.starts_with("Intact: today's log of"), "{verdict}");
        browser.goto(&format!("{url}integrity")).await.unwrap();
        let tampered = kept.replacen('\n', "\n1", 1);
        browser.find(Locator::Id("kept")).await.unwrap().send_keys(&tampered).await.unwrap();
        browser.find(Locator::Id("compare")).await.unwrap().click().await.unwrap();
        let verdict = browser.wait().for_element(Locator::Id("integrity")).await.unwrap().text().await.unwrap();
        assert!(verdict.starts_with("NOT intact"), "{verdict}");

        // The child's page: the subject-access report in plain words.
        browser.goto(&format!("{url}child")).await.unwrap();
        browser.find(Locator::Id("nhs_number")).await.unwrap().send_keys("9990079196").await.unwrap();
        browser.find(Locator::Id("show")).await.unwrap().click().await.unwrap();
        let report = browser.wait().for_element(Locator::Id("report")).await.unwrap().text().await.unwrap();
        assert!(report.contains("refused"), "{report}");
        assert!(report.contains("shared an update"), "{report}");
        let consents = browser.find(Locator::Id("consents")).await.unwrap().text().await.unwrap();
        assert!(consents.contains("recorded a consent"), "the consent timeline: {consents}");
        let headings = browser.find_all(Locator::Css("main h2")).await.unwrap();
        let mut texts = Vec::new();
        for heading in headings {
            texts.push(heading.text().await.unwrap());
        }
        assert!(texts.iter().any(|text| text.contains("Who saw *** *** 9196")), "{texts:?}");
        assert!(!browser.current_url().await.unwrap().as_str().contains("9196"));
        browser.close().await.unwrap();

        // The broker audited the console's search as the auditor and the person named.
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::AuditRead as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        assert!(
            entries.iter().any(|entry| entry.actor.as_ref().is_some_and(|actor| actor.professional_id == "dpo-evans")),
            "{entries:#?}"
        );
    });
    drop(console);
}

/// A plain HTTP/1.1 GET on loopback: the page's body.
fn get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `tio console --dev`: one command starts a development server, tells the demo's story
/// so that the log has something in it, and serves the console over it; Ctrl-C stops
/// both.
#[test]
fn console_dev_starts_a_server_tells_the_story_and_serves_the_console() {
    let mut child = Command::new(tio_binary())
        .args(["console", "--dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut told = false;
    let address = loop {
        let line = lines.next().expect("the console printed its address").unwrap();
        told |= line.contains("The story checked out");
        if let Some(url) = line.strip_prefix("console: http://") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    assert!(told, "the demo's story is told first");
    let page = get(&address, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("Verified with the broker&#39;s key") || page.contains("Verified with the broker's key"),
        "{page}"
    );
    assert!(page.contains("The log&#39;s key is not pinned") || page.contains("The log's key is not pinned"));
    assert!(page.contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(page.contains("cache-control: no-store") && page.contains("referrer-policy: no-referrer"), "{page}");
    let css = get(&address, "/assets/nhsuk-frontend.min.css");
    assert!(css.contains("cache-control: max-age=86400"), "assets may be cached: {css}");
    assert!(css.contains("text/css") && css.contains(".nhsuk-header"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(running.0.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the console did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

/// The registry, with an admin's certificate: an agency suspended and reinstated in the
/// browser, each after a confirmation step; the broker refuses the suspended agency in
/// between; a change posted without the console's own token is refused; an auditor's
/// console is shown the broker's refusal.
#[test]
fn an_admin_suspends_and_reinstates_an_agency_with_a_confirmation_step() {
    let sandbox = Sandbox::start();
    let runtime = runtime();
    let (_admin_console, url) = start_console(&sandbox, "admin", &[]);
    let (_auditor_console, auditor_url) = start_console(&sandbox, "auditor", &[]);
    let (_driver, driver_url) = chromedriver();
    let address = |url: &str| url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let refused = get(&address(&auditor_url), "/registry");
    assert!(refused.starts_with("HTTP/1.1 403"), "an auditor is not an admin: {refused}");
    let forged = post(&address(&url), "/registry/school/suspend", "token=forged&confirmed=yes&reason=x");
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");

    runtime.block_on(async {
        let browser = browser(&driver_url).await;
        browser.goto(&format!("{url}registry")).await.unwrap();
        let row = browser.find(Locator::Id("agency-school")).await.unwrap().text().await.unwrap();
        assert!(row.contains("Active"), "{row}");
        browser.find(Locator::Css("#agency-school button")).await.unwrap().click().await.unwrap();
        let reason = browser.wait().for_element(Locator::Id("reason")).await.unwrap();
        reason.send_keys("Certificate reported lost").await.unwrap();
        browser.find(Locator::Id("confirm")).await.unwrap().click().await.unwrap();
        let notice = browser.wait().for_element(Locator::Id("notice")).await.unwrap().text().await.unwrap();
        assert_eq!(notice, "school is suspended");
        let row = browser.find(Locator::Id("agency-school")).await.unwrap().text().await.unwrap();
        assert!(row.contains("Suspended"), "{row}");

        let school = as_professional(&sandbox, "school").await;
        let status = school
            .records()
            .get_profile(school.request(v1::GetProfileRequest { child: child(AMY), categories: vec![] }))
            .await;
        assert_eq!(status.unwrap_err().code(), tonic::Code::PermissionDenied, "suspended");

        browser.find(Locator::Css("#agency-school button")).await.unwrap().click().await.unwrap();
        browser.wait().for_element(Locator::Id("confirm")).await.unwrap().click().await.unwrap();
        let notice = browser.wait().for_element(Locator::Id("notice")).await.unwrap().text().await.unwrap();
        assert_eq!(notice, "school is reinstated");
        browser.close().await.unwrap();
        assert!(
            school
                .records()
                .get_profile(school.request(v1::GetProfileRequest { child: child(AMY), categories: vec![] }))
                .await
                .is_ok()
        );

        // The suspension is audited with its reason, as the admin and the person named.
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::Admin as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        assert!(
            entries.iter().any(|entry| entry.detail.contains("Certificate reported lost")
                && entry.actor.as_ref().is_some_and(|actor| actor.professional_id == "dpo-evans")),
            "{entries:#?}"
        );
    });
}

/// A plain HTTP/1.1 form POST on loopback: the response.
fn post(address: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
