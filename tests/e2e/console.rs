//! The auditor's console in a real headless Chromium (issue 18): `tio console` runs as
//! its own process, a client of the real broker over mutual TLS with the auditor's (or
//! admin's) certificate; the browser, driven through chromedriver, signs in with the
//! printed one-time link, sees the overview verify the latest checkpoint against the
//! pinned key, searches the audit log by NHS number sent in the form's body (never in
//! the address; the child shown masked), proves an entry, checks a kept checkpoint and
//! an uploaded export, opens a child's record and the family's report in Polish and
//! Welsh and downloads it as a PDF, and suspends and reinstates an agency. Every page
//! visited is screenshotted and scanned with axe-core; flows are repeated with the
//! keyboard alone. Over plain HTTP: no page without a session, no form without its
//! session's token, nothing personal in any log; off loopback only with TLS.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{ClientBuilder, Locator};
use tio_proto::v1;

use crate::support::records::*;
use crate::support::{Sandbox, arg, tio_as, tio_binary};

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

/// A running `tio console`: its address, the sign-in links it prints (each works
/// once; it prints the next when one is used), and its log (standard error).
struct Console {
    _running: Running,
    url: String,
    links: std::sync::mpsc::Receiver<String>,
    log: tempfile::NamedTempFile,
}

impl Console {
    /// The next sign-in link it printed (waits at most 20 s).
    fn link(&self) -> String {
        self.links.recv_timeout(Duration::from_secs(20)).expect("the console printed a sign-in link")
    }

    /// `host:port`.
    fn address(&self) -> String {
        self.url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_owned()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}

/// Starts `tio console` as certificate `name` of the sandbox's PKI, and waits until it
/// prints its address.
fn start_console(sandbox: &Sandbox, name: &str, extra: &[&str]) -> Console {
    let server = format!("https://localhost:{}", sandbox.address.port());
    let pki = arg(&sandbox.pki.dir);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut console = Command::new(tio_binary())
        .args(["console", "--listen", "127.0.0.1:0", "--server", &server, "--dev-pki", &pki, "--as", name])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = console.stdout.take().unwrap();
    let running = Running(console);
    let (links, received) = std::sync::mpsc::channel();
    let (urls, url) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(link) = line.strip_prefix("sign in (this link works once): ") {
                let _ = links.send(link.to_owned());
            } else if let Some(address) = line.strip_prefix("console: ") {
                let _ = urls.send(address.to_owned());
            }
        }
    });
    let url = url.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no address printed"));
    Console { _running: running, url, links: received, log }
}

/// Signs in through the browser with the console's next link, as `name`.
async fn sign_in(browser: &fantoccini::Client, console: &Console, name: &str) {
    browser.goto(&console.link()).await.unwrap();
    browser.find(Locator::Id("name")).await.unwrap().send_keys(name).await.unwrap();
    look_at(browser, "sign-in").await;
    browser.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    let signed_in = browser.wait().for_element(Locator::Id("signed-in-as")).await.unwrap().text().await.unwrap();
    assert_eq!(signed_in, format!("Signed in as {name}"));
}

/// A headless Chromium session through chromedriver; downloads go to `downloads`.
async fn browser(driver_url: &str, downloads: &std::path::Path) -> fantoccini::Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            "prefs": {
                "download.default_directory": arg(downloads),
                "download.prompt_for_download": false,
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url)
        .await
        .expect("a headless chromium session (tests/run installs chromium and chromium-driver)")
}

/// axe-core, vendored (`vendor/README.md`).
const AXE: &str = include_str!("vendor/axe.min.js");

/// Looks at the page the browser shows, as a person and as an auditor of accessibility
/// would: saves a full-page screenshot as an artefact of the run
/// (`target/tmp/console-screenshots/NAME.png`; the window is first stretched to the
/// page's height), and runs axe-core on it, failing on any serious or critical
/// violation of WCAG 2.0, 2.1 or 2.2 at level A or AA.
async fn look_at(browser: &fantoccini::Client, name: &str) {
    let height = browser.execute("return document.documentElement.scrollHeight", vec![]).await.unwrap();
    let height = u32::try_from(height.as_u64().unwrap_or(900).clamp(600, 8000)).unwrap_or(900);
    browser.set_window_size(1280, height).await.unwrap();
    let png = browser.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();

    browser.execute(&format!("{AXE}\nreturn true;"), vec![]).await.unwrap();
    let scan = r#"
        const done = arguments[arguments.length - 1];
        const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];
        axe.run(document, { runOnly: { type: 'tag', values: tags } })
            .then(results => done({
                rules: results.passes.length + results.violations.length,
                serious: results.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
                        v.nodes.map(n => n.target.join(' ')).join(', ')),
            }))
            .catch(err => done({ error: String(err) }));
    "#;
    let verdict = browser.execute_async(scan, vec![]).await.unwrap();
    assert!(verdict.get("error").is_none(), "{name}: axe did not run: {verdict}");
    assert!(verdict["rules"].as_u64().unwrap_or(0) > 10, "{name}: axe checked almost nothing: {verdict}");
    let serious = verdict["serious"].as_array().cloned().unwrap_or_default();
    assert!(serious.is_empty(), "{name}: serious or critical accessibility violations: {serious:#?}");
}

/// Presses Tab (at most 40 times) until `condition`, a script expression about the
/// focused element, holds.
async fn tab_to(browser: &fantoccini::Client, condition: &str) {
    for _ in 0..40 {
        let holds = browser.execute(&format!("return {condition};"), vec![]).await.unwrap();
        if holds.as_bool() == Some(true) {
            return;
        }
        browser.active_element().await.unwrap().send_keys(&Key::Tab.to_string()).await.unwrap();
    }
    panic!("Tab never reached the element where {condition}");
}

/// The file that appears in `dir` (waits at most 20 s for a download to finish).
fn downloaded(dir: &std::path::Path) -> (String, Vec<u8>) {
    let started = Instant::now();
    loop {
        let finished = std::fs::read_dir(dir).unwrap().filter_map(Result::ok).find(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            !name.ends_with(".crdownload") && !name.starts_with('.')
        });
        if let Some(entry) = finished {
            return (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "nothing was downloaded within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let console = start_console(&sandbox, "auditor", &["--public-key", &key]);
    let url = console.url.clone();
    let downloads = tempfile::tempdir().unwrap();
    let (_driver, driver_url) = chromedriver();

    runtime.block_on(async {
        let browser = browser(&driver_url, downloads.path()).await;
        sign_in(&browser, &console, "dpo-evans").await;
        assert_eq!(browser.current_url().await.unwrap().as_str(), url, "signed in, the overview");
        let verdict = browser.find(Locator::Id("verdict")).await.unwrap().text().await.unwrap();
        assert_eq!(verdict, "Verified with your pinned key");
        // The activity, in counts: the school's refusal among them.
        let refusals = browser.find(Locator::Id("refusals")).await.unwrap().text().await.unwrap();
        assert!(refusals.contains("not involved"), "{refusals}");
        browser.find(Locator::Css("#per-day svg[role=img]")).await.unwrap();
        look_at(&browser, "overview").await;
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
        look_at(&browser, "audit-log").await;
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
        look_at(&browser, "entry").await;

        // Integrity: the checkpoint kept at the start is still in today's log; a
        // tampered one does not verify.
        browser.goto(&format!("{url}integrity")).await.unwrap();
        browser.find(Locator::Id("kept")).await.unwrap().send_keys(&kept).await.unwrap();
        browser.find(Locator::Id("compare")).await.unwrap().click().await.unwrap();
        let verdict = browser.wait().for_element(Locator::Id("integrity")).await.unwrap().text().await.unwrap();
        assert!(verdict.starts_with("Intact: today's log of"), "{verdict}");
        look_at(&browser, "integrity").await;
        // An export, verified here as `tio audit verify` does; a tampered one is not.
        let export = tempfile::tempdir().unwrap();
        let out = arg(&export.path().join("export"));
        let (ok, _, stderr) = tio_as(&sandbox, "auditor", &["audit", "export", "--out", &out]);
        assert!(ok, "{stderr}");
        let entries = export.path().join("export/entries.jsonl");
        let checkpoint = arg(&export.path().join("export/checkpoint"));
        browser.goto(&format!("{url}integrity")).await.unwrap();
        browser.find(Locator::Id("entries")).await.unwrap().send_keys(&arg(&entries)).await.unwrap();
        browser.find(Locator::Id("checkpoint")).await.unwrap().send_keys(&checkpoint).await.unwrap();
        browser.find(Locator::Id("verify-export")).await.unwrap().click().await.unwrap();
        let verdict = browser.wait().for_element(Locator::Id("export-verdict")).await.unwrap().text().await.unwrap();
        assert!(
            verdict.starts_with("Verified: all ") && verdict.contains("entries match the signed checkpoint"),
            "{verdict}"
        );
        look_at(&browser, "integrity-export").await;
        let text = std::fs::read_to_string(&entries).unwrap();
        let tampered_entries = export.path().join("tampered.jsonl");
        std::fs::write(&tampered_entries, text.replacen("profile_read", "profile_reed", 1)).unwrap();
        browser.goto(&format!("{url}integrity")).await.unwrap();
        browser.find(Locator::Id("entries")).await.unwrap().send_keys(&arg(&tampered_entries)).await.unwrap();
        browser.find(Locator::Id("checkpoint")).await.unwrap().send_keys(&checkpoint).await.unwrap();
        browser.find(Locator::Id("verify-export")).await.unwrap().click().await.unwrap();
        let verdict = browser.wait().for_element(Locator::Id("export-verdict")).await.unwrap().text().await.unwrap();
        assert!(verdict.starts_with("NOT verified"), "{verdict}");

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
        look_at(&browser, "child").await;

        // The family's report, in Polish, then switched to Welsh, then as a PDF.
        browser.find(Locator::Css("#language option[value=pl]")).await.unwrap().click().await.unwrap();
        browser.find(Locator::Id("family")).await.unwrap().click().await.unwrap();
        let report = browser.wait().for_element(Locator::Id("family-report")).await.unwrap();
        assert_eq!(report.attr("lang").await.unwrap().as_deref(), Some("pl"));
        let title = browser.find(Locator::Id("report-title")).await.unwrap().text().await.unwrap();
        assert_eq!(title, "Kto widział informacje o Twoim dziecku");
        let lines = browser.find(Locator::Id("family-lines")).await.unwrap().text().await.unwrap();
        assert!(
            lines.contains("odmowa: organizacja nie uczestniczy w opiece nad Twoim dzieckiem"),
            "the refusal, in Polish: {lines}"
        );
        let admin = sandbox.client("admin").await;
        let agencies = admin.admin().list_agencies(admin.request(v1::ListAgenciesRequest {})).await.unwrap();
        let hospital = agencies.into_inner().agencies.into_iter().find(|agency| agency.id == "hospital").unwrap();
        assert!(lines.contains(&hospital.name), "organisation names as recorded: {lines}");
        look_at(&browser, "family-report-pl").await;
        browser.find(Locator::Css("#language option[value=cy]")).await.unwrap().click().await.unwrap();
        browser.find(Locator::Id("switch")).await.unwrap().click().await.unwrap();
        browser.wait().for_element(Locator::Css("#family-report[lang=cy]")).await.unwrap();
        let title = browser.find(Locator::Id("report-title")).await.unwrap().text().await.unwrap();
        assert_eq!(title, "Pwy sydd wedi gweld gwybodaeth eich plentyn");
        look_at(&browser, "family-report-cy").await;
        assert!(!browser.current_url().await.unwrap().as_str().contains("9196"));
        browser.find(Locator::Id("download")).await.unwrap().click().await.unwrap();
        let (name, pdf) = downloaded(downloads.path());
        assert_eq!(name, "subject-access-report-cy.pdf", "no child in the file's name");
        assert!(pdf.starts_with(b"%PDF-"), "a PDF");
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Lang(cy)") && text.contains("Pwy sydd wedi gweld gwybodaeth eich plentyn"));

        // The same with the keyboard alone: the skip link first, then Tab to the field,
        // type, and Enter.
        browser.goto(&format!("{url}child")).await.unwrap();
        browser.active_element().await.unwrap().send_keys(&Key::Tab.to_string()).await.unwrap();
        let first = browser.active_element().await.unwrap().text().await.unwrap();
        assert_eq!(first, "Skip to main content", "the first Tab reaches the skip link");
        browser.active_element().await.unwrap().send_keys(&Key::Enter.to_string()).await.unwrap();
        tab_to(&browser, "document.activeElement.id === 'nhs_number'").await;
        let field = browser.active_element().await.unwrap();
        field.send_keys("9990079196").await.unwrap();
        field.send_keys(&Key::Enter.to_string()).await.unwrap();
        let report = browser.wait().for_element(Locator::Id("report")).await.unwrap().text().await.unwrap();
        assert!(report.contains("refused"), "the report, reached by keyboard: {report}");
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
    // Nothing personal in the console's log: every request is there, no NHS number.
    let log = console.log_text();
    assert!(log.contains("console request") && log.contains("path=/child"), "{log}");
    assert!(!log.contains("9990079196") && !log.contains("999 007 9196") && !log.contains("token="), "{log}");
    let broker_log = sandbox.log_text();
    assert!(!broker_log.contains("9990079196") && !broker_log.contains("999 007 9196"), "{broker_log}");
}

/// A plain HTTP/1.1 request on loopback (a form body if given, the cookie if given):
/// the whole response, head and body.
fn http(address: &str, method: &str, path: &str, cookie: Option<&str>, body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    write!(stream, "{head}\r\n{}", body.unwrap_or_default()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn get(address: &str, path: &str) -> String {
    http(address, "GET", path, None, None)
}

/// A form value as a URL-encoded body writes it.
fn encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Signs in without a browser, through `link`: the session cookie (`name=value`) and
/// the session's form token.
fn sign_in_raw(address: &str, link: &str, name: &str) -> (String, String) {
    let token = link.split_once("token=").unwrap().1;
    let response = http(address, "POST", "/sign-in", None, Some(&format!("token={token}&name={}", encoded(name))));
    assert!(response.starts_with("HTTP/1.1 303"), "{response}");
    let cookie = response
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {response}"));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = http(address, "GET", "/", Some(&cookie), None);
    let csrf = page.split_once("name=\"csrf\" value=\"").unwrap().1.split('"').next().unwrap().to_owned();
    (cookie, csrf)
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
    let mut link = None;
    let address = loop {
        let line = lines.next().expect("the console printed its address").unwrap();
        told |= line.contains("The story checked out");
        if let Some(printed) = line.strip_prefix("sign in (this link works once): ") {
            link = Some(printed.to_owned());
        }
        if let Some(url) = line.strip_prefix("console: http://") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    assert!(told, "the demo's story is told first");
    let refused = get(&address, "/");
    assert!(refused.starts_with("HTTP/1.1 401"), "no session, no page: {refused}");
    let (cookie, _) = sign_in_raw(&address, &link.expect("a sign-in link printed"), "dpo-evans");
    // The console counts the log in the background at start; the page does not wait.
    let started = Instant::now();
    let page = loop {
        let page = http(&address, "GET", "/", Some(&cookie), None);
        if page.contains("Entries per day") || started.elapsed() > Duration::from_secs(20) {
            break page;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.contains("id=\"alerts\"") && page.contains("protection flag access"), "the story's alert: {page}");
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
    let admin_console = start_console(&sandbox, "admin", &[]);
    let url = admin_console.url.clone();
    let auditor_console = start_console(&sandbox, "auditor", &[]);
    let (_driver, driver_url) = chromedriver();
    let (cookie, _) = sign_in_raw(&auditor_console.address(), &auditor_console.link(), "dpo-evans");
    let refused = http(&auditor_console.address(), "GET", "/registry", Some(&cookie), None);
    assert!(refused.starts_with("HTTP/1.1 403"), "an auditor is not an admin: {refused}");

    runtime.block_on(async {
        let downloads = tempfile::tempdir().unwrap();
        let browser = browser(&driver_url, downloads.path()).await;
        sign_in(&browser, &admin_console, "dpo-evans").await;
        browser.goto(&format!("{url}registry")).await.unwrap();
        let row = browser.find(Locator::Id("agency-school")).await.unwrap().text().await.unwrap();
        assert!(row.contains("Active"), "{row}");
        browser.find(Locator::Css("#agency-school button")).await.unwrap().click().await.unwrap();
        let reason = browser.wait().for_element(Locator::Id("reason")).await.unwrap();
        look_at(&browser, "registry-confirm").await;
        reason.send_keys("Certificate reported lost").await.unwrap();
        browser.find(Locator::Id("confirm")).await.unwrap().click().await.unwrap();
        let notice = browser.wait().for_element(Locator::Id("notice")).await.unwrap().text().await.unwrap();
        assert_eq!(notice, "school is suspended");
        look_at(&browser, "registry-suspended").await;
        let row = browser.find(Locator::Id("agency-school")).await.unwrap().text().await.unwrap();
        assert!(row.contains("Suspended"), "{row}");

        let school = as_professional(&sandbox, "school").await;
        let status = school
            .records()
            .get_profile(school.request(v1::GetProfileRequest { child: child(AMY), categories: vec![] }))
            .await;
        assert_eq!(status.unwrap_err().code(), tonic::Code::PermissionDenied, "suspended");

        // Reinstated with the keyboard alone: Tab to the school's button, Enter, Tab to
        // the confirmation, Enter.
        tab_to(&browser, "document.activeElement.closest('#agency-school') !== null").await;
        browser.active_element().await.unwrap().send_keys(&Key::Enter.to_string()).await.unwrap();
        browser.wait().for_element(Locator::Id("confirm")).await.unwrap();
        tab_to(&browser, "document.activeElement.id === 'confirm'").await;
        browser.active_element().await.unwrap().send_keys(&Key::Enter.to_string()).await.unwrap();
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

/// No page or form answers without a session; each sign-in link works once (the next is
/// printed); a form without its session's own token, or with another session's, is
/// refused before the broker hears of it; signing out ends the session; the person's
/// name is the professional the broker records; nothing personal reaches the log.
#[test]
fn the_console_answers_only_signed_in_sessions_and_only_their_own_forms() {
    let sandbox = Sandbox::start();
    let console = start_console(&sandbox, "admin", &[]);
    let address = console.address();
    for path in ["/", "/audit", "/child", "/entry/0", "/integrity", "/registry"] {
        let response = get(&address, path);
        assert!(response.starts_with("HTTP/1.1 401") && response.contains("Sign in first"), "{path}: {response}");
    }
    for path in ["/audit", "/child", "/integrity", "/registry/school/suspend", "/sign-out"] {
        let response = http(&address, "POST", path, None, Some("confirmed=yes&reason=x&nhs_number=9990079196"));
        assert!(response.starts_with("HTTP/1.1 401"), "{path}: {response}");
    }
    let forged = http(&address, "GET", "/", Some("tio_console_session=00ff"), None);
    assert!(forged.starts_with("HTTP/1.1 401"), "a made-up cookie is no session: {forged}");
    // The stylesheet is served to anyone: the sign-in page needs it.
    assert!(get(&address, "/assets/nhsuk-frontend.min.css").starts_with("HTTP/1.1 200"));

    let link = console.link();
    let token = link.split_once("token=").unwrap().1.to_owned();
    assert!(get(&address, &format!("/sign-in?token={token}")).starts_with("HTTP/1.1 200"));
    assert!(get(&address, "/sign-in?token=guess").starts_with("HTTP/1.1 403"));
    let unnamed = http(&address, "POST", "/sign-in", None, Some(&format!("token={token}&name=+")));
    assert!(unnamed.starts_with("HTTP/1.1 400") && unnamed.contains("Enter your name"), "{unnamed}");
    let spaced = http(&address, "POST", "/sign-in", None, Some(&format!("token={token}&name=Sam+Jones")));
    assert!(spaced.starts_with("HTTP/1.1 400") && spaced.contains("no spaces"), "{spaced}");
    let (cookie, csrf) = sign_in_raw(&address, &link, "dr.sam.jones");
    let again = http(&address, "POST", "/sign-in", None, Some(&format!("token={token}&name=Eve")));
    assert!(again.starts_with("HTTP/1.1 403"), "a link works once: {again}");
    let next = console.link();
    assert_ne!(next, link, "the next link is printed");
    let (other_cookie, other_csrf) = sign_in_raw(&address, &next, "other.person");

    let change = "confirmed=yes&reason=forged";
    for body in [
        change.to_owned(),
        format!("{change}&csrf=forged"),
        format!("{change}&csrf={}", &csrf[..63]),
        format!("{change}&csrf={other_csrf}"),
    ] {
        let refused = http(&address, "POST", "/registry/school/suspend", Some(&cookie), Some(&body));
        assert!(refused.starts_with("HTTP/1.1 403") && refused.contains("not made for you"), "{body}: {refused}");
    }
    let runtime = runtime();
    runtime.block_on(async {
        let admin = sandbox.client("admin").await;
        let agencies = admin.admin().list_agencies(admin.request(v1::ListAgenciesRequest {})).await.unwrap();
        let school = agencies.into_inner().agencies.into_iter().find(|agency| agency.id == "school").unwrap();
        assert!(!school.suspended, "no forged form reached the broker");
    });
    // With its own token, the same session's form is served.
    let search = format!("csrf={csrf}&nhs_number={}", encoded("999 007 9196"));
    let found = http(&address, "POST", "/audit", Some(&cookie), Some(&search));
    assert!(found.starts_with("HTTP/1.1 200") && found.contains("Signed in as dr.sam.jones"), "{found}");

    let out = http(&address, "POST", "/sign-out", Some(&other_cookie), Some(&format!("csrf={other_csrf}")));
    assert!(out.starts_with("HTTP/1.1 200") && out.contains("Max-Age=0"), "{out}");
    assert!(http(&address, "GET", "/", Some(&other_cookie), None).starts_with("HTTP/1.1 401"), "signed out");
    assert!(http(&address, "GET", "/", Some(&cookie), None).starts_with("HTTP/1.1 200"), "the other session lives");

    runtime.block_on(async {
        let auditor = sandbox.client("auditor").await;
        let query = v1::QueryEntriesRequest { action: v1::AuditAction::AuditRead as i32, ..Default::default() };
        let entries = auditor.audit().query_entries(auditor.request(query)).await.unwrap().into_inner().entries;
        assert!(
            entries
                .iter()
                .any(|entry| entry.actor.as_ref().is_some_and(|actor| actor.professional_id == "dr.sam.jones")),
            "the broker records the signed-in person: {entries:#?}"
        );
    });
    let log = console.log_text();
    assert!(log.contains("path=/audit") && log.contains("status=403"), "{log}");
    assert!(!log.contains("9990079196") && !log.contains("999 007 9196") && !log.contains(&token), "{log}");
}

/// Off loopback the console needs TLS, and says so at start; with its certificate and
/// key it serves HTTPS, and its session cookies are `Secure`.
#[test]
fn off_loopback_the_console_needs_tls_and_serves_https_with_it() {
    let sandbox = Sandbox::start();
    // Refused before it listens: no address but loopback is bound in this test.
    let (ok, _, stderr) = tio_as(&sandbox, "auditor", &["console", "--listen", "0.0.0.0:0"]);
    assert!(!ok && stderr.contains("only over TLS") && stderr.contains("--tls-cert"), "{stderr}");

    let cert = arg(&sandbox.pki.dir.join("server.crt"));
    let key = arg(&sandbox.pki.dir.join("server.key"));
    let console = start_console(&sandbox, "auditor", &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(console.url.starts_with("https://127.0.0.1:"), "{}", console.url);
    let link = console.link();
    assert!(link.starts_with("https://127.0.0.1:"), "{link}");
    let token = link.split_once("token=").unwrap().1.to_owned();
    let address = console.address();
    let ca = sandbox.pki.dir.join("ca.crt");
    runtime().block_on(async {
        let page = https(&address, &ca, &format!("GET /sign-in?token={token} HTTP/1.1\r\nHost: localhost\r\n")).await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("Your name"), "{page}");
        let body = format!("token={token}&name=dpo-evans");
        let request = format!(
            "POST /sign-in HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let signed_in = https(&address, &ca, &request).await;
        let cookie = signed_in.lines().find(|line| line.starts_with("set-cookie: ")).unwrap_or_default();
        assert!(cookie.ends_with("; Secure"), "{signed_in}");
    });
    // Plain HTTP on the TLS port gets no page.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(&address).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

/// One HTTPS request (`head` without its closing blank line, a body after it if any),
/// trusting `ca`: the whole response.
async fn https(address: &str, ca: &std::path::Path, head: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    // The head's own lines, then Connection: close, then the body (after a blank line).
    let (lines, body) = head.split_once("\r\n\r\n").unwrap_or((head.trim_end(), ""));
    let request = format!("{lines}\r\nConnection: close\r\n\r\n{body}");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A server may close without a TLS close_notify; what was read is the answer.
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut response)).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// A console holding an agency's certificate gets nothing: without a pinned key it does
/// not start, saying the broker refused; with one, it starts, and each page shows the
/// broker's refusal (403).
#[test]
fn a_console_with_an_agencys_certificate_is_refused_by_the_broker() {
    let sandbox = Sandbox::start();
    let (ok, _, stderr) = tio_as(&sandbox, "school", &["console", "--listen", "127.0.0.1:0"]);
    assert!(!ok && stderr.contains("cannot reach the broker") && stderr.contains("PERMISSION_DENIED"), "{stderr}");

    let key_file = tempfile::NamedTempFile::new().unwrap();
    runtime().block_on(async {
        let auditor = sandbox.client("auditor").await;
        let key = auditor.audit().get_public_key(auditor.request(v1::GetPublicKeyRequest {})).await.unwrap();
        std::fs::write(key_file.path(), key.into_inner().verifier_key).unwrap();
    });
    let console = start_console(&sandbox, "school", &["--public-key", &arg(key_file.path())]);
    let address = console.address();
    let (cookie, _) = sign_in_raw(&address, &console.link(), "school.user");
    for path in ["/", "/registry"] {
        let refused = http(&address, "GET", path, Some(&cookie), None);
        assert!(refused.starts_with("HTTP/1.1 403") && refused.contains("The broker refused"), "{path}: {refused}");
    }
}
