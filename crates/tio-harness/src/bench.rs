//! `tio bench`: throughput and latency of the broker's flows, measured from a client
//! over mutual TLS against a real server (by default a fresh development server per
//! scenario, on a loopback port with a temporary data directory), with 1 KiB values.
//!
//! Every loop is bounded by `--duration` and by counts; every request goes to loopback
//! or to the `--server` given.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tio_client::{Client, ConnectionSettings};
use tio_core::{NhsNumber, NhsNumberPolicy};
use tio_proto::v1;
use tokio_stream::wrappers::ReceiverStream;

use crate::own_server::OwnServer;
use crate::{HarnessError, Result, RunningServer, unexpected};

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: [&str; 8] = [
    TRANSPORT_FLOOR,
    "publish-unary",
    "publish-stream",
    "fanout-latency",
    "catch-up",
    "profile-read",
    "stalled-subscriber",
    "console-overview",
];

/// The scenario every run measures first: the same calls' transport (mutual TLS, the
/// authentication interceptor, HTTP/2) doing no work, so that each throughput reads as a
/// ratio to what the transport allows on this machine at this moment.
const TRANSPORT_FLOOR: &str = "transport-floor";

/// Children the scenarios spread their updates over.
const CHILDREN: usize = 200;

/// The size of each category value.
const VALUE_BYTES: usize = 1024;

/// What one scenario measured.
#[derive(Debug, Default, Clone)]
struct Outcome {
    scenario: String,
    ops: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
    missing: u64,
    errors: u64,
    rss_bytes: Option<u64>,
    note: String,
}

impl Outcome {
    fn percentile(&self, fraction: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    fn ops_per_s(&self) -> f64 {
        if self.seconds > 0.0 { self.ops as f64 / self.seconds } else { 0.0 }
    }

    /// Returns this throughput as a share of the floor's (`None` without one, and for
    /// the floor itself and a scenario whose rate is offered rather than reached).
    fn of_floor(&self, floor: Option<f64>) -> Option<f64> {
        let throughput = !matches!(self.scenario.as_str(), TRANSPORT_FLOOR | "fanout-latency" | "console-overview");
        floor.filter(|floor| *floor > 0.0 && throughput).map(|floor| self.ops_per_s() / floor)
    }

    fn json(&self, floor: Option<f64>) -> serde_json::Value {
        serde_json::json!({
            "of_floor": self.of_floor(floor).map(|ratio| (ratio * 1000.0).round() / 1000.0),
            "scenario": self.scenario,
            "ops": self.ops,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "ops_per_s": self.ops_per_s().round(),
            "p50_us": self.percentile(0.50),
            "p99_us": self.percentile(0.99),
            "p999_us": self.percentile(0.999),
            "missing": self.missing,
            "errors": self.errors,
            "rss_bytes": self.rss_bytes,
        })
    }
}

/// What `tio bench` runs, and how.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `tio` binary, to start a development server per scenario with.
    pub tio: PathBuf,
    /// Scenario names ([`SCENARIOS`]), or `all`.
    pub scenarios: Vec<String>,
    /// How long each scenario's measured phase runs.
    pub duration: Duration,
    /// Concurrent publishers for publish-unary (readers for profile-read, callers for
    /// the transport floor).
    pub publishers: usize,
    /// Publishes per second offered in fanout-latency.
    pub rate: u64,
    /// Stored updates a new subscriber replays in catch-up.
    pub catch_up_updates: usize,
    /// Audit entries in the log (at least) before console-overview asks for its page.
    pub console_entries: u64,
    /// Run stalled-subscriber without its stalled subscription, as a control.
    pub without_stall: bool,
    /// Print one JSON object per scenario instead of a table.
    pub json: bool,
    /// Run against this running development server instead of a fresh one each.
    pub server: Option<RunningServer>,
}

/// Where the scenario runs: the server and the certificates to reach it.
struct Target {
    url: String,
    pki: PathBuf,
    own: Option<OwnServer>,
}

impl Target {
    async fn client(&self, name: &str) -> Result<Client> {
        let settings = ConnectionSettings {
            professional: Some(format!("bench-{name}")),
            ..ConnectionSettings::from_dev_pki(self.url.clone(), &self.pki, name)
        };
        Client::connect(&settings).await.map_err(|source| HarnessError::Connect { name: name.into(), source })
    }
}

/// Runs `tio bench`: each scenario in turn, printing progress on standard error and
/// the figures on standard output.
pub fn run(args: &BenchOptions) -> Result<()> {
    let names: Vec<String> = if args.scenarios.iter().any(|name| name == "all") {
        SCENARIOS.iter().map(|name| (*name).to_owned()).collect()
    } else {
        args.scenarios.clone()
    };
    for name in &names {
        if !SCENARIOS.contains(&name.as_str()) {
            return Err(HarnessError::Usage(format!(
                "--scenario `{name}`: expected one of {} or all",
                SCENARIOS.join(", ")
            )));
        }
    }
    // The floor is measured first in every run, so that every figure has its ratio.
    let mut names = names;
    if !names.iter().any(|name| name == TRANSPORT_FLOOR) {
        names.insert(0, TRANSPORT_FLOOR.to_owned());
    }
    if cfg!(debug_assertions) {
        eprintln!("tio bench: this is a debug build; run `cargo run --release -p tio -- bench` for real figures");
    }
    let runtime = crate::runtime()?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut floor = None;
    for name in &names {
        let target = match &args.server {
            Some(running) => Target { url: running.url.clone(), pki: running.dev_pki.clone(), own: None },
            None => {
                let own = OwnServer::start(&args.tio, None, false)?;
                Target { url: own.url().to_owned(), pki: own.data_dir().join("dev-pki"), own: Some(own) }
            }
        };
        eprintln!("tio bench: {name} ({} s)...", args.duration.as_secs());
        let outcome = runtime
            .block_on(scenario(name, &target, args))
            .map_err(|err| HarnessError::Scenario { scenario: name.clone(), source: Box::new(err) })?;
        if name == TRANSPORT_FLOOR {
            floor = Some(outcome.ops_per_s());
        }
        if args.json {
            println!("{}", outcome.json(floor));
        }
        outcomes.push(outcome);
        drop(target);
    }
    if !args.json {
        println!(
            "{:<20} {:>9} {:>8} {:>10} {:>8} {:>9} {:>9} {:>9} {:>8} {:>7} {:>10}",
            "scenario",
            "ops",
            "seconds",
            "ops/s",
            "of floor",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "missing",
            "errors",
            "rss MiB"
        );
        for outcome in &outcomes {
            println!(
                "{:<20} {:>9} {:>8.2} {:>10.0} {:>8} {:>9} {:>9} {:>9} {:>8} {:>7} {:>10}",
                outcome.scenario,
                outcome.ops,
                outcome.seconds,
                outcome.ops_per_s(),
                outcome.of_floor(floor).map_or("-".to_owned(), |ratio| format!("{ratio:.2}")),
                outcome.percentile(0.5),
                outcome.percentile(0.99),
                outcome.percentile(0.999),
                outcome.missing,
                outcome.errors,
                outcome.rss_bytes.map_or("-".to_owned(), |bytes| format!("{:.1}", bytes as f64 / 1_048_576.0)),
            );
            if !outcome.note.is_empty() {
                println!("    {}", outcome.note);
            }
        }
    }
    Ok(())
}

async fn scenario(name: &str, target: &Target, args: &BenchOptions) -> Result<Outcome> {
    let duration = args.duration.max(Duration::from_secs(1));
    let mut outcome = match name {
        TRANSPORT_FLOOR => transport_floor(target, args.publishers.max(1), duration).await?,
        "publish-unary" => publish_unary(target, args.publishers.max(1), duration).await?,
        "publish-stream" => publish_stream(target, duration).await?,
        "fanout-latency" => fanout_latency(target, args.rate.max(1), duration).await?,
        "catch-up" => catch_up(target, args.catch_up_updates.max(1), duration).await?,
        "profile-read" => profile_read(target, args.publishers.max(1), duration).await?,
        "stalled-subscriber" => stalled_subscriber(target, duration, !args.without_stall).await?,
        "console-overview" => {
            console_overview(target, args.console_entries.max(1), args.publishers.max(1), duration).await?
        }
        other => unexpected!("unknown scenario {other}"),
    };
    outcome.scenario = name.to_owned();
    Ok(outcome)
}

/// Test-range NHS numbers with valid check digits.
fn children(count: usize) -> Vec<NhsNumber> {
    let policy = NhsNumberPolicy::development();
    (0..100_000u32)
        .flat_map(|n| (0..10).map(move |digit| format!("999{n:06}{digit}")))
        .filter_map(|digits| NhsNumber::parse(&digits, &policy).ok())
        .take(count)
        .collect()
}

/// A 1 KiB communication-needs value.
fn value(sequence: u64) -> v1::CategoryValue {
    let text = format!("bench value {sequence} ");
    let padding = "x".repeat(VALUE_BYTES.saturating_sub(text.len()));
    v1::CategoryValue {
        value: Some(v1::category_value::Value::CommunicationNeeds(v1::CommunicationNeeds {
            how_i_communicate: format!("{text}{padding}"),
            ..Default::default()
        })),
    }
}

/// A tag of this run, put before every idempotency key: run again against the same
/// server (`--server`), a bench would otherwise repeat the last run's keys and measure
/// the answers to duplicates instead of publishes.
fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        format!("{:x}.{}", started.as_nanos(), std::process::id())
    })
}

fn publish_request(child: &NhsNumber, key: String, sequence: u64) -> v1::PublishRequest {
    v1::PublishRequest {
        child: Some(v1::ChildRef { nhs_number: child.digits() }),
        category: v1::Category::CommunicationNeeds as i32,
        value: Some(value(sequence)),
        source_reference: String::new(),
        idempotency_key: format!("{}-{key}", run_tag()),
        recorded_at: None,
    }
}

/// Prints a progress line on stderr each second until `stop` is dropped.
fn progress(counter: Arc<AtomicU64>) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {
                    let done = counter.load(Ordering::Relaxed);
                    eprint!("\r  {done} ops in {:.0} s ({:.0}/s)   ", started.elapsed().as_secs_f64(), done as f64 / started.elapsed().as_secs_f64());
                }
            }
        }
        eprintln!();
    });
    stop
}

/// What one call of a closed loop came to.
enum Answer {
    /// Answered as it should.
    Done,
    /// Answered, but without what it should carry (counted as missing).
    Empty,
    /// Failed.
    Failed,
}

/// Runs `callers` closed loops until `duration` has passed, each making `call(caller,
/// sequence)` and waiting for its answer before the next: the latency of every answer,
/// the failures, and the answers that came back empty.
async fn closed_loop<F, Fut>(callers: usize, duration: Duration, call: F) -> Result<Outcome>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send,
{
    let call = Arc::new(call);
    let counter = Arc::new(AtomicU64::new(0));
    let stop_progress = progress(counter.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (call, counter) = (call.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut empty) = (Vec::new(), 0u64, 0u64);
            for sequence in 0u64.. {
                if Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                match call(caller, sequence).await {
                    Answer::Done => latencies.push(sent.elapsed().as_micros() as u64),
                    Answer::Empty => {
                        latencies.push(sent.elapsed().as_micros() as u64);
                        empty += 1;
                    }
                    Answer::Failed => errors += 1,
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
            (latencies, errors, empty)
        }));
    }
    let mut outcome = Outcome::default();
    for task in tasks {
        let (latencies, errors, empty) = task.await?;
        outcome.ops += latencies.len() as u64;
        outcome.latencies_us.extend(latencies);
        outcome.errors += errors;
        outcome.missing += empty;
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    drop(stop_progress);
    Ok(outcome)
}

/// The transport with no work: `callers` concurrent health checks (through the same
/// interceptor, client and connection settings as every other scenario).
async fn transport_floor(target: &Target, callers: usize, duration: Duration) -> Result<Outcome> {
    let client = target.client("hospital").await?;
    let mut outcome = closed_loop(callers, duration, move |_, _| {
        let client = client.clone();
        async move { if client.health("").await.is_ok() { Answer::Done } else { Answer::Failed } }
    })
    .await?;
    outcome.note = format!("{callers} callers, health checks: the transport with no work");
    Ok(outcome)
}

async fn publish_unary(target: &Target, publishers: usize, duration: Duration) -> Result<Outcome> {
    let client = target.client("hospital").await?;
    let children = Arc::new(children(CHILDREN));
    let mut outcome = closed_loop(publishers, duration, move |publisher, sequence| {
        let (client, children) = (client.clone(), children.clone());
        async move {
            let child = &children[(publisher + sequence as usize * 7) % children.len()];
            let request = publish_request(child, format!("u-{publisher}-{sequence}"), sequence);
            match client.records().publish(client.request(request)).await {
                Ok(_) => Answer::Done,
                Err(_) => Answer::Failed,
            }
        }
    })
    .await?;
    outcome.note = format!("{publishers} publishers, durable unary publishes");
    Ok(outcome)
}

async fn publish_stream(target: &Target, duration: Duration) -> Result<Outcome> {
    let client = target.client("hospital").await?;
    let children = children(CHILDREN);
    let counter = Arc::new(AtomicU64::new(0));
    let stop_progress = progress(counter.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let (sender, receiver) = tokio::sync::mpsc::channel::<v1::PublishRequest>(1024);
    let mut results =
        client.records().publish_stream(client.request(ReceiverStream::new(receiver))).await?.into_inner();
    let sent_at: Arc<std::sync::Mutex<HashMap<u64, Instant>>> = Arc::default();
    let feeder_sent = sent_at.clone();
    let feeder = tokio::spawn(async move {
        for sequence in 0u64.. {
            if Instant::now() >= deadline {
                break;
            }
            let request =
                publish_request(&children[sequence as usize % children.len()], format!("s-{sequence}"), sequence);
            feeder_sent.lock().map(|mut map| map.insert(sequence, Instant::now())).ok();
            if sender.send(request).await.is_err() {
                break;
            }
        }
    });
    let mut outcome = Outcome::default();
    while let Some(result) = results.message().await? {
        let sent = sent_at.lock().ok().and_then(|mut map| map.remove(&result.index));
        match result.outcome {
            Some(v1::publish_stream_result::Outcome::Published(_)) => {
                outcome.ops += 1;
                if let Some(sent) = sent {
                    outcome.latencies_us.push(sent.elapsed().as_micros() as u64);
                }
            }
            _ => outcome.errors += 1,
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
    feeder.await?;
    outcome.seconds = started.elapsed().as_secs_f64();
    drop(stop_progress);
    outcome.note = "one bulk stream; latency is from sending an item to its durable result".to_owned();
    Ok(outcome)
}

/// Consents to the education and social-care sectors for `children`, and the named
/// agencies involved with each.
async fn prepare_children(target: &Target, children: &[NhsNumber], agencies: &[&str]) -> Result<()> {
    let hospital = target.client("hospital").await?;
    let mut clients = Vec::new();
    for agency in agencies {
        clients.push(target.client(agency).await?);
    }
    let work = children.iter().flat_map(|child| {
        let consent = {
            let hospital = hospital.clone();
            let child = child.digits();
            async move {
                let request = v1::RecordConsentRequest {
                    authority: None,
                    child: Some(v1::ChildRef { nhs_number: child }),
                    giver_role: v1::ConsentGiverRole::ParentWithParentalResponsibility as i32,
                    giver_name: "Bench Parent".into(),
                    categories: vec![v1::Category::CommunicationNeeds as i32],
                    recipients: Some(v1::Recipients {
                        sectors: vec![v1::Sector::Education as i32, v1::Sector::SocialCare as i32],
                        ..Default::default()
                    }),
                    purpose: "benchmark".into(),
                    lawful_basis: v1::LawfulBasis::PublicTask as i32,
                    special_category_condition: v1::SpecialCategoryCondition::HealthOrSocialCare as i32,
                    valid: None,
                    evidence: Some(v1::ConsentEvidence {
                        method: v1::ConsentMethod::InPerson as i32,
                        ..Default::default()
                    }),
                };
                hospital.consents().record_consent(hospital.request(request)).await.map(|_| ())
            }
        };
        let declares = clients.iter().map(|client| {
            let client = client.clone();
            let child = child.digits();
            async move {
                let request = v1::DeclareRelationshipRequest {
                    child: Some(v1::ChildRef { nhs_number: child }),
                    kind: v1::RelationshipKind::Allocation as i32,
                    reference: String::new(),
                };
                client.relationships().declare_relationship(client.request(request)).await.map(|_| ())
            }
        });
        let consent: futures_util::future::BoxFuture<'static, Result<(), tonic::Status>> = Box::pin(consent);
        std::iter::once(consent).chain(declares.map(|d| Box::pin(d) as futures_util::future::BoxFuture<'static, _>))
    });
    let results: Vec<Result<(), tonic::Status>> = futures_util::stream::iter(work).buffer_unordered(32).collect().await;
    if let Some(Err(status)) = results.into_iter().find(Result::is_err) {
        unexpected!("preparing the children failed: {}", tio_client::describe_status(&status));
    }
    Ok(())
}

/// Opens a live subscription `name` for `client`, returning its request sender and
/// response stream.
async fn open_subscription(
    client: &Client,
    name: &str,
    start: v1::start_from::From,
    credit: u32,
) -> Result<(tokio::sync::mpsc::Sender<v1::SubscribeRequest>, tonic::Streaming<v1::SubscribeResponse>)> {
    let request = v1::CreateSubscriptionRequest {
        name: name.into(),
        categories: vec![v1::Category::CommunicationNeeds as i32],
        start: Some(v1::StartFrom { from: Some(start) }),
        max_in_flight: 10_000,
    };
    client.subscriptions().create_subscription(client.request(request)).await?;
    let (requests, outgoing) = tokio::sync::mpsc::channel(1024);
    let open = v1::OpenSubscription { name: name.into(), credit };
    requests.send(v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Open(open)) }).await?;
    let responses = client.subscriptions().subscribe(client.request(ReceiverStream::new(outgoing))).await?.into_inner();
    Ok((requests, responses))
}

fn ack(numbers: Vec<u64>) -> v1::SubscribeRequest {
    v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Ack(v1::Ack { delivery_numbers: numbers })) }
}

async fn fanout_latency(target: &Target, rate: u64, duration: Duration) -> Result<Outcome> {
    let children = children(CHILDREN);
    let agencies = ["school", "send-team", "social-care"];
    prepare_children(target, &children, &agencies).await?;
    let sent_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut receivers = Vec::new();
    let expected = Arc::new(AtomicU64::new(0));
    let (done_publishing, done_watch) = tokio::sync::watch::channel(false);
    for agency in agencies {
        let client = target.client(agency).await?;
        let (requests, mut responses) =
            open_subscription(&client, "bench", v1::start_from::From::Live(v1::Live {}), 0).await?;
        let (expected, mut done) = (expected.clone(), done_watch.clone());
        receivers.push(tokio::spawn(async move {
            // Receipts by update id: a delivery can arrive before its publish's reply.
            let mut receipts: HashMap<String, Instant> = HashMap::new();
            let mut finished = false;
            loop {
                let wait = if finished { Duration::from_secs(5) } else { Duration::from_secs(3600) };
                let message = tokio::select! {
                    message = tokio::time::timeout(wait, responses.message()) => message,
                    _ = done.wait_for(|done| *done), if !finished => {
                        finished = true;
                        if receipts.len() as u64 >= expected.load(Ordering::Relaxed) {
                            break;
                        }
                        continue;
                    }
                };
                let Ok(Ok(Some(message))) = message else { break };
                if let Some(v1::subscribe_response::Message::Delivery(delivery)) = message.message {
                    receipts.entry(delivery.update_id).or_insert_with(Instant::now);
                    let _ = requests.send(ack(vec![delivery.delivery_number])).await;
                    if finished && receipts.len() as u64 >= expected.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            receipts
        }));
    }
    let hospital = target.client("hospital").await?;
    let counter = Arc::new(AtomicU64::new(0));
    let stop_progress = progress(counter.clone());
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut publishes = Vec::new();
    let mut errors = 0u64;
    for sequence in 0u64.. {
        if started.elapsed() >= duration {
            break;
        }
        tick.tick().await;
        let request = publish_request(&children[sequence as usize % children.len()], format!("f-{sequence}"), sequence);
        let (hospital, sent_at, counter) = (hospital.clone(), sent_at.clone(), counter.clone());
        publishes.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = hospital.records().publish(hospital.request(request)).await;
            counter.fetch_add(1, Ordering::Relaxed);
            result.map(|response| {
                // Latency runs from the send of the publish to receipt by each subscriber.
                sent_at.lock().map(|mut map| map.insert(response.into_inner().update_id, sent)).ok();
            })
        }));
    }
    for publish in publishes {
        if publish.await?.is_err() {
            errors += 1;
        }
    }
    let published = counter.load(Ordering::Relaxed) - errors;
    expected.store(published, Ordering::Relaxed);
    let _ = done_publishing.send(true);
    let seconds = started.elapsed().as_secs_f64();
    let mut outcome = Outcome { seconds, errors, ..Outcome::default() };
    let sent_at = sent_at.lock().map(|map| map.clone()).unwrap_or_default();
    for receiver in receivers {
        let receipts = receiver.await?;
        for (update_id, sent) in &sent_at {
            match receipts.get(update_id) {
                Some(received) => {
                    outcome.latencies_us.push(received.saturating_duration_since(*sent).as_micros() as u64)
                }
                None => outcome.missing += 1,
            }
        }
    }
    outcome.ops = published;
    drop(stop_progress);
    outcome.note =
        format!("{rate}/s offered, three subscribing agencies; latency from publish sent to delivery received");
    Ok(outcome)
}

async fn catch_up(target: &Target, updates: usize, duration: Duration) -> Result<Outcome> {
    let children = children(CHILDREN);
    prepare_children(target, &children, &["send-team"]).await?;
    // Store the backlog with one bulk stream.
    let hospital = target.client("hospital").await?;
    let requests: Vec<v1::PublishRequest> = (0..updates as u64)
        .map(|sequence| {
            publish_request(&children[sequence as usize % children.len()], format!("c-{sequence}"), sequence)
        })
        .collect();
    let mut results =
        hospital.records().publish_stream(hospital.request(tokio_stream::iter(requests))).await?.into_inner();
    let mut stored = 0u64;
    while let Some(result) = results.message().await? {
        if matches!(result.outcome, Some(v1::publish_stream_result::Outcome::Published(_))) {
            stored += 1;
        }
    }
    let send_team = target.client("send-team").await?;
    let epoch = prost_types::Timestamp { seconds: 0, nanos: 0 };
    let counter = Arc::new(AtomicU64::new(0));
    let stop_progress = progress(counter.clone());
    let started = Instant::now();
    let (requests, mut responses) =
        open_subscription(&send_team, "catch-up", v1::start_from::From::Since(epoch), 0).await?;
    let deadline = started + duration.max(Duration::from_secs(60));
    let mut received = 0u64;
    let mut pending = Vec::new();
    while received < stored && Instant::now() < deadline {
        let Ok(Ok(Some(message))) = tokio::time::timeout(Duration::from_secs(10), responses.message()).await else {
            break;
        };
        if let Some(v1::subscribe_response::Message::Delivery(delivery)) = message.message {
            received += 1;
            counter.fetch_add(1, Ordering::Relaxed);
            pending.push(delivery.delivery_number);
            if pending.len() >= 256 {
                requests.send(ack(std::mem::take(&mut pending))).await?;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(stop_progress);
    Ok(Outcome {
        ops: received,
        seconds,
        missing: stored - received,
        note: format!("a new subscriber replays {stored} stored updates (acks in batches of 256)"),
        ..Outcome::default()
    })
}

async fn profile_read(target: &Target, readers: usize, duration: Duration) -> Result<Outcome> {
    let children = Arc::new(children(CHILDREN));
    prepare_children(target, &children, &["school"]).await?;
    let hospital = target.client("hospital").await?;
    let requests: Vec<v1::PublishRequest> = (0..children.len() as u64)
        .map(|sequence| publish_request(&children[sequence as usize], format!("p-{sequence}"), sequence))
        .collect();
    let mut results =
        hospital.records().publish_stream(hospital.request(tokio_stream::iter(requests))).await?.into_inner();
    while results.message().await?.is_some() {}
    let school = target.client("school").await?;
    let mut outcome = closed_loop(readers, duration, move |reader, sequence| {
        let (school, children) = (school.clone(), children.clone());
        async move {
            let child = &children[(reader * 31 + sequence as usize) % children.len()];
            let request = v1::GetProfileRequest {
                child: Some(v1::ChildRef { nhs_number: child.digits() }),
                categories: Vec::new(),
            };
            match school.records().get_profile(school.request(request)).await {
                Ok(response) if response.get_ref().entries.is_empty() => Answer::Empty,
                Ok(_) => Answer::Done,
                Err(_) => Answer::Failed,
            }
        }
    })
    .await?;
    outcome.note = format!("{readers} concurrent readers; each read is decided and audited");
    Ok(outcome)
}

async fn stalled_subscriber(target: &Target, duration: Duration, stall: bool) -> Result<Outcome> {
    let children = Arc::new(children(CHILDREN));
    prepare_children(target, &children, &["school", "send-team"]).await?;
    // The school opens a subscription and never acks: at most max_in_flight wait for it.
    let school = target.client("school").await?;
    let _stalled = if stall {
        Some(open_subscription(&school, "stalled", v1::start_from::From::Live(v1::Live {}), 0).await?)
    } else {
        None
    };
    // The SEND team keeps up.
    let send_team = target.client("send-team").await?;
    let (requests, mut responses) =
        open_subscription(&send_team, "healthy", v1::start_from::From::Live(v1::Live {}), 0).await?;
    let healthy = tokio::spawn(async move {
        let mut received = 0u64;
        while let Ok(Ok(Some(message))) = tokio::time::timeout(Duration::from_secs(10), responses.message()).await {
            if let Some(v1::subscribe_response::Message::Delivery(delivery)) = message.message {
                received += 1;
                if requests.send(ack(vec![delivery.delivery_number])).await.is_err() {
                    break;
                }
            }
        }
        received
    });
    // Resident memory at the start, half way and at the end: flat means the second half
    // adds about nothing, whatever the first half's warm-up (caches) took.
    let rss = || target.own.as_ref().and_then(OwnServer::rss_bytes);
    let rss_at_start = rss();
    let first = publish_unary(target, 16, duration / 2).await?;
    let rss_half_way = rss();
    let second = publish_unary(target, 16, duration - duration / 2).await?;
    let rss_at_end = rss();
    drop(healthy);
    let mut outcome = first;
    outcome.ops += second.ops;
    outcome.seconds += second.seconds;
    outcome.errors += second.errors;
    outcome.latencies_us.extend(second.latencies_us);
    let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
    Ok(Outcome {
        rss_bytes: rss_at_end,
        note: match (rss_at_start, rss_half_way, rss_at_end) {
            (Some(start), Some(half), Some(end)) => format!(
                "{} while 16 publishers run; server RSS {:.1} MiB at start, {:.1} half way, {:.1} at end",
                if stall { "one subscriber never acks" } else { "control: no stalled subscriber" },
                mib(start),
                mib(half),
                mib(end)
            ),
            _ => "server RSS not measurable (not a local child process)".to_owned(),
        },
        ..outcome
    })
}

/// The console's first page over a log of at least `entries` audit entries. The log is
/// filled by durable publishes (an entry each, `publishers` at a time); a console is
/// then started in this process as the auditor, signed in over HTTP, and its overview
/// asked for at once (while the console still counts the log in the background, which
/// the page does not wait for), then again once the count is done, then in a closed
/// loop for `duration`: the latencies are those of the loop.
async fn console_overview(target: &Target, entries: u64, publishers: usize, duration: Duration) -> Result<Outcome> {
    let hospital = target.client("hospital").await?;
    let auditor = target.client("auditor").await?;
    // The log's size now: an export signs a checkpoint covering every entry so far.
    let size = |auditor: Client| async move {
        let request = auditor.request(v1::ExportEntriesRequest { from_index: 0, to_index: 1 });
        let mut stream = auditor.audit().export_entries(request).await?.into_inner();
        let mut size = 0;
        while let Some(message) = stream.message().await? {
            if let Some(v1::export_entries_response::Item::Checkpoint(checkpoint)) = message.item {
                size = checkpoint.tree_size;
            }
        }
        Ok::<u64, HarnessError>(size)
    };
    let children = Arc::new(children(CHILDREN));
    // Bounded: ten minutes, and rounds that each publish what is still missing.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut round = 0u64;
    let logged = loop {
        let logged = size(auditor.clone()).await?;
        if logged >= entries {
            break logged;
        }
        if Instant::now() >= deadline {
            unexpected!("the audit log held {logged} of {entries} entries after ten minutes of publishing")
        }
        eprintln!("  filling the audit log from {logged} to {entries} entries (a publish each)");
        let counter = Arc::new(AtomicU64::new(logged));
        let stop_progress = progress(counter.clone());
        let mut tasks = Vec::new();
        for publisher in 0..publishers {
            let (client, children, counter) = (hospital.clone(), children.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                for sequence in 0u64.. {
                    if counter.fetch_add(1, Ordering::Relaxed) >= entries || Instant::now() >= deadline {
                        break;
                    }
                    let child = &children[(publisher + sequence as usize * 7) % children.len()];
                    let request = publish_request(child, format!("fill-{round}-{publisher}-{sequence}"), sequence);
                    client.records().publish(client.request(request)).await?;
                }
                Ok::<(), HarnessError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        drop(stop_progress);
        round += 1;
    };

    let (links, link) = std::sync::mpsc::channel();
    let announce: tio_console::Announce = Box::new(move |line| {
        let _ = links.send(line.to_owned());
    });
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let options = tio_console::ConsoleOptions { listen, tls: None, client: auditor, pinned_key: None, announce };
    let bound = tio_console::bind(options).await.map_err(|err| HarnessError::Unexpected(err.to_string()))?;
    let address = bound.local_addr().map_err(|err| HarnessError::Unexpected(err.to_string()))?;
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));
    let link =
        link.recv_timeout(Duration::from_secs(5)).map_err(|_| HarnessError::Unexpected("no sign-in link".into()))?;
    let token = link.split_once("token=").map(|(_, token)| token.to_owned()).unwrap_or_default();
    let signed_in = http(address, "POST", "/sign-in", None, Some(&format!("token={token}&name=bench"))).await?;
    let Some(cookie) = signed_in.lines().find_map(|line| line.strip_prefix("set-cookie: ")) else {
        unexpected!("the console did not sign the bench in: {signed_in}")
    };
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();

    let sent = Instant::now();
    let first = http(address, "GET", "/", Some(&cookie), None).await?;
    let first_ms = sent.elapsed().as_secs_f64() * 1000.0;
    if !first.starts_with("HTTP/1.1 200") {
        unexpected!("the overview did not answer 200: {}", first.lines().next().unwrap_or_default())
    }
    // Bounded: two minutes for the console's count of the whole log.
    let counted_ms = loop {
        let page = http(address, "GET", "/", Some(&cookie), None).await?;
        if page.contains("Entries per day") {
            break started.elapsed().as_secs_f64() * 1000.0;
        }
        if started.elapsed() > Duration::from_secs(120) {
            unexpected!("the console had not counted the log after two minutes")
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cookie = Arc::new(cookie);
    let mut outcome = closed_loop(1, duration, move |_, _| {
        let cookie = cookie.clone();
        async move {
            match http(address, "GET", "/", Some(&cookie), None).await {
                Ok(page) if page.starts_with("HTTP/1.1 200") && page.contains("Entries per day") => Answer::Done,
                Ok(page) if page.starts_with("HTTP/1.1 200") => Answer::Empty,
                _ => Answer::Failed,
            }
        }
    })
    .await?;
    let _ = stop.send(());
    let _ = serving.await;
    outcome.note = format!(
        "{logged} entries in the log: the first page in {first_ms:.1} ms (the count not yet done), \
         the count of the whole log done {counted_ms:.0} ms after start; then pages one after another"
    );
    Ok(outcome)
}

/// One HTTP/1.1 request on loopback (a form body if given): the whole response.
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::net::TcpStream::connect(address).await.map_err(HarnessError::io("connect to the console"))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes()).await.map_err(HarnessError::io("write to the console"))?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response)).await;
    read.map_err(|_| HarnessError::Unexpected("the console did not answer within 60 s".into()))?
        .map_err(HarnessError::io("read from the console"))?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}
