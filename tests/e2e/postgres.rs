//! The broker on the PostgreSQL engine (`store.engine = "postgres"`), against a real
//! PostgreSQL started for the test (`initdb` in a temporary directory).

use std::time::Duration;

use crate::support::{arg, run_tio};

/// Every place an NHS number of the story could be written in plain text: as digits,
/// spaced as people write it, and as the ASCII of either.
fn plain_forms(number: &str) -> Vec<Vec<u8>> {
    let spaced = format!("{} {} {}", &number[..3], &number[3..6], &number[6..]);
    vec![number.as_bytes().to_vec(), spaced.into_bytes()]
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut next = vec![dir.to_owned()];
    while let Some(dir) = next.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                next.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The README's first command on PostgreSQL: the demo's own server keeps its store in
/// the database, reached over loopback TCP with TLS verified against the database's CA
/// (`store.postgres.ca_file`); the story checks out, the tables hold what it wrote, and
/// no NHS number of the story is anywhere in the database's files or its WAL.
#[test]
fn the_demo_tells_the_whole_story_on_postgresql_and_the_database_holds_no_nhs_number() {
    let server = tio_pgtest::TestPostgres::start_with_tls().expect("a test PostgreSQL starts (tests/run installs it)");
    let url = server.create_database().unwrap();
    let database = url.rsplit("dbname=").next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("postgres-ca.pem");
    std::fs::write(&ca_file, server.tls_ca_pem().unwrap()).unwrap();
    let data = dir.path().join("demo-data");
    let (status, stdout, stderr) = run_tio(
        &["demo", "--data-dir", &arg(&data)],
        &[
            ("TIO_STORE_ENGINE", "postgres"),
            ("TIO_STORE_POSTGRES_URL", &server.tcp_url(&database)),
            ("TIO_STORE_POSTGRES_CA_FILE", &arg(&ca_file)),
        ],
    );
    assert!(status.success(), "the demo failed on PostgreSQL:\n{stdout}\n{stderr}");
    assert!(stdout.contains("The story checked out"), "{stdout}");
    assert!(!data.join("store").exists(), "the store is in the database, not the data directory");
    let updates: u64 =
        server.psql(&database, "SELECT count(*) FROM tio_log WHERE space = 1").unwrap().trim().parse().unwrap();
    let audit: u64 =
        server.psql(&database, "SELECT count(*) FROM tio_log WHERE space = 11").unwrap().trim().parse().unwrap();
    assert!(updates >= 5 && audit > updates, "updates {updates}, audit entries {audit}");
    let log = std::fs::read_to_string(data.join("demo-server.log")).unwrap();
    assert!(!log.contains("error"), "the server logged an error:\n{log}");
    server.psql("postgres", "CHECKPOINT").unwrap();

    let numbers = ["9990079196"];
    let forms: Vec<Vec<u8>> = numbers.iter().flat_map(|number| plain_forms(number)).collect();
    assert!(stdout.contains("999 007 9196"), "the story is about a child the grep looks for");
    let mut found = Vec::new();
    let files = files_under(&server.data_dir());
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_default();
        for form in &forms {
            if bytes.windows(form.len()).any(|window| window == form.as_slice()) {
                found.push(format!("{} in {}", String::from_utf8_lossy(form), path.display()));
            }
        }
    }
    assert!(files.iter().any(|path| path.to_string_lossy().contains("pg_wal")), "the WAL was searched too");
    assert!(found.is_empty(), "NHS numbers in plain text in the database's files:\n{}", found.join("\n"));

    // The stopped store moves off PostgreSQL with the offline commands, and checks out.
    let url = server.tcp_url(&database);
    let on_postgres = ["--engine", "postgres", "--postgres-url", &url, "--postgres-ca-file", &arg(&ca_file)];
    let keys = data.join("dev-keys").join("tio.keys");
    let (status, stdout, stderr) = run_tio(
        &[&["store", "check", "--data-dir", &arg(&data), "--keys-file", &arg(&keys)], &on_postgres[..]].concat(),
        &[],
    );
    assert!(status.success() && stdout.contains("checking the PostgreSQL database"), "{stdout}{stderr}");
    let backup = dir.path().join("store.backup");
    let (status, stdout, stderr) = run_tio(
        &[&["store", "backup", "--data-dir", &arg(&data), "--out", &arg(&backup)], &on_postgres[..]].concat(),
        &[],
    );
    assert!(status.success(), "{stdout}{stderr}");
    let embedded = dir.path().join("embedded");
    let (status, stdout, stderr) =
        run_tio(&["store", "restore", "--in", &arg(&backup), "--data-dir", &arg(&embedded)], &[]);
    assert!(status.success(), "{stdout}{stderr}");
    let (status, stdout, stderr) =
        run_tio(&["store", "check", "--data-dir", &arg(&embedded), "--keys-file", &arg(&keys)], &[]);
    assert!(status.success() && !stdout.contains("DAMAGED"), "{stdout}{stderr}");
    let (status, _, stderr) = run_tio(
        &[&["store", "restore", "--in", &arg(&backup), "--data-dir", &arg(&embedded)], &on_postgres[..]].concat(),
        &[],
    );
    assert!(!status.success() && stderr.contains("already holds a store"), "{stderr}");
    let (status, _, stderr) =
        run_tio(&["store", "backup", "--data-dir", &arg(&data), "--out", "x", "--engine", "postgres"], &[]);
    assert!(!status.success() && stderr.contains("--postgres-url"), "{stderr}");
}

/// Opens `name` as `client` on whichever node `client` talks to, trying again while
/// the subscription is still held by a stream of a node that stopped (its lease has not
/// lapsed); every refusal meanwhile says why. Returns the stream and the first
/// delivery, if one came at once.
async fn open_when_free(
    client: &tio_client::Client,
    name: &str,
) -> (crate::support::stream::Stream, Option<tio_proto::v1::Delivery>) {
    use tio_proto::v1::subscribe_response::Message;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut stream = crate::support::stream::Stream::open(client, name, 0).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(3), stream.responses.message()).await {
            Err(_) => return (stream, None),
            Ok(Ok(Some(message))) => {
                let delivery = match message.message {
                    Some(Message::Delivery(delivery)) => Some(delivery),
                    _ => None,
                };
                return (stream, delivery);
            }
            Ok(Err(status)) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                assert!(status.message().contains("already open"), "{status:?}");
            }
            Ok(Ok(None)) => panic!("the stream ended without a status"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the subscription was never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two broker nodes on one database, as two machines would run them: changes made on
/// either apply on both (consents, relationships, a suspension within a second),
/// publishes on both reach subscribers on both, each update once per subscription and
/// in the order published; and when one node is killed with SIGKILL mid-stream, its
/// subscriber moves to the other once the stream's lease lapses and carries on from its
/// last ack with no gap (unacked deliveries again, with their numbers).
#[test]
fn two_nodes_share_one_database_and_a_stream_moves_when_its_node_is_killed() {
    use std::collections::BTreeMap;

    use tio_proto::v1;

    use crate::support::records::*;
    use crate::support::stream::{Stream, create};
    use crate::support::{Options, Sandbox};

    let server = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let url = server.create_database().unwrap();
    let options = Options {
        args: vec!["--set".into(), "store.postgres.stream_lease_seconds=2".into()],
        env: vec![("TIO_STORE_ENGINE".into(), "postgres".into()), ("TIO_STORE_POSTGRES_URL".into(), url)],
        ..Options::default()
    };
    let mut first = Sandbox::start_with(options);
    let second = first.start_peer("second-node");
    runtime().block_on(async {
        let hospital_1 = as_professional(&first, "hospital").await;
        let hospital_2 = as_professional_on(&second, "hospital").await;
        let send_team_1 = as_professional(&first, "send-team").await;
        let school_2 = as_professional_on(&second, "school").await;

        // Consent recorded on one node, involvement declared on the other.
        hospital_1
            .consents()
            .record_consent(hospital_1.request(consent_request(&[v1::Category::HealthSummary])))
            .await
            .unwrap();
        for client in [&send_team_1, &school_2] {
            declare_allocation(client).await;
        }
        create(&send_team_1, "main", &[v1::Category::HealthSummary], None).await;
        create(&school_2, "main", &[v1::Category::HealthSummary], None).await;
        let mut send_team_stream = Stream::open(&send_team_1, "main", 0).await.unwrap();
        let mut school_stream = Stream::open(&school_2, "main", 0).await.unwrap();

        // A suspension on the first node refuses the agency on the second within a second
        // (polled here for at most five, so that a loaded machine reports the time it took).
        let icb_2 = as_professional_on(&second, "icb").await;
        let list =
            || async { icb_2.subscriptions().list_subscriptions(icb_2.request(v1::ListSubscriptionsRequest {})).await };
        list().await.expect("icb may call before the suspension");
        let admin_1 = first.client("admin").await;
        let suspend = v1::SuspendAgencyRequest { agency_id: "icb".into(), reason: "test".into() };
        admin_1.admin().suspend_agency(admin_1.request(suspend)).await.unwrap();
        let suspended_at = std::time::Instant::now();
        let refused = loop {
            match list().await {
                Err(status) => break status,
                Ok(_) => {
                    assert!(suspended_at.elapsed() < Duration::from_secs(5), "the suspension never reached node two");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        eprintln!("the suspension applied on the other node after {:?}", suspended_at.elapsed());

        // Publishes on both nodes, in turn.
        const BEFORE: usize = 12;
        const AFTER: usize = 12;
        let mut published = Vec::new();
        for i in 0..BEFORE {
            let client = if i % 2 == 0 { &hospital_1 } else { &hospital_2 };
            let request =
                publish_request(AMY, v1::Category::HealthSummary, health_summary(&format!("u{i}")), &format!("p{i}"));
            published.push(publish(client, request).await.unwrap().update_id);
        }
        let mut school_seen = Vec::new();
        for number in 1..=BEFORE as u64 {
            let delivery = school_stream.delivery().await;
            assert_eq!((delivery.delivery_number, delivery.redelivery), (number, false));
            school_seen.push(delivery.update_id);
            school_stream.ack(&[number]).await;
        }
        assert_eq!(school_seen, published, "every update once, in the order published");
        let mut send_team_seen: BTreeMap<u64, String> = BTreeMap::new();
        for number in 1..=BEFORE as u64 {
            let delivery = send_team_stream.delivery().await;
            assert_eq!((delivery.delivery_number, delivery.redelivery), (number, false));
            send_team_seen.insert(number, delivery.update_id);
        }
        // Half acked, and the acks stored, before the node dies.
        let acked = BEFORE as u64 / 2;
        send_team_stream.ack(&(1..=acked).collect::<Vec<_>>()).await;
        let status_request = || send_team_1.request(v1::GetSubscriptionStatusRequest { name: "main".into() });
        for _ in 0..400 {
            let status = send_team_1.subscriptions().get_subscription_status(status_request()).await.unwrap();
            if status.into_inner().last_acked_number == acked {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        // While the first node serves the stream, the second refuses another on the
        // same subscription, and says it is open.
        let send_team_2 = as_professional_on(&second, "send-team").await;
        let mut rival = Stream::open(&send_team_2, "main", 0).await.unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(30), rival.end())
            .await
            .expect("a second stream on the subscription is refused, not served");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("already open"), "{refused:?}");
        let status_2 = send_team_2
            .subscriptions()
            .get_subscription_status(send_team_2.request(v1::GetSubscriptionStatusRequest { name: "main".into() }))
            .await
            .unwrap()
            .into_inner();
        assert!(status_2.open, "the other node's stream is open");

        // Kill the first node mid-stream; publishing goes on through the second.
        first.signal(nix::sys::signal::Signal::SIGKILL);
        first.wait_exit(Duration::from_secs(20));
        drop(send_team_stream);
        for i in BEFORE..BEFORE + AFTER {
            let request =
                publish_request(AMY, v1::Category::HealthSummary, health_summary(&format!("u{i}")), &format!("p{i}"));
            published.push(publish(&hospital_2, request).await.unwrap().update_id);
        }
        for number in BEFORE as u64 + 1..=(BEFORE + AFTER) as u64 {
            let delivery = school_stream.delivery().await;
            assert_eq!((delivery.delivery_number, delivery.redelivery), (number, false));
            school_seen.push(delivery.update_id);
        }
        assert_eq!(school_seen, published, "the second node's subscriber missed nothing");

        // The SEND team's subscriber comes back on the second node.
        let (mut moved, mut first_delivery) = open_when_free(&send_team_2, "main").await;
        let mut numbers = Vec::new();
        while numbers.len() < BEFORE - acked as usize + AFTER {
            let delivery = match first_delivery.take() {
                Some(delivery) => delivery,
                None => moved.delivery().await,
            };
            let number = delivery.delivery_number;
            if number <= BEFORE as u64 {
                assert!(delivery.redelivery, "delivery {number} was sent before, unacked");
                assert_eq!(send_team_seen.get(&number), Some(&delivery.update_id), "again with its own number");
            } else {
                assert!(!delivery.redelivery);
                send_team_seen.insert(number, delivery.update_id);
            }
            numbers.push(number);
            moved.ack(&[number]).await;
        }
        let expected: Vec<u64> = (acked + 1..=(BEFORE + AFTER) as u64).collect();
        assert_eq!(numbers, expected, "from the last ack on, no gap and nothing twice");
        assert_eq!(send_team_seen.into_values().collect::<Vec<_>>(), published, "every update once, in order");
    });
    assert!(!second.log_text().contains("ERROR"), "the surviving node logged an error:\n{}", second.log_text());
}

/// A node reports its database's state: while the database is down, health checks say
/// NOT_SERVING and the metrics `tio_store_reachable 0`; once it is back, SERVING and 1,
/// and a publish is stored again.
#[test]
fn a_node_is_not_serving_while_its_database_is_down_and_serves_again_once_it_is_back() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    use crate::metrics::scrape;
    use crate::support::records::*;
    use crate::support::{Options, Sandbox};

    let mut server = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let options = Options {
        env: vec![
            ("TIO_STORE_ENGINE".into(), "postgres".into()),
            ("TIO_STORE_POSTGRES_URL".into(), server.create_database().unwrap()),
        ],
        ..Options::default()
    };
    let sandbox = Sandbox::start_with(options);
    runtime().block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let status = || async {
            let request = hospital.request(HealthCheckRequest { service: String::new() });
            HealthClient::new(hospital.channel()).check(request).await.unwrap().into_inner().status()
        };
        let reachable =
            |up: bool| scrape(&sandbox, "/metrics").contains(&format!("tio_store_reachable {}", u8::from(up)));
        assert_eq!(status().await, ServingStatus::Serving);
        assert!(reachable(true));
        let wait_for = |wanted: ServingStatus| {
            let (status, sandbox) = (&status, &sandbox);
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while status().await != wanted {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the node never said {wanted:?}; its log:\n{}",
                        sandbox.log_text()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };

        server.kill();
        wait_for(ServingStatus::NotServing).await;
        assert!(reachable(false), "the metrics say the database does not answer");
        server.restart().unwrap();
        wait_for(ServingStatus::Serving).await;
        assert!(reachable(true));
        let request =
            publish_request(AMY, tio_proto::v1::Category::HealthSummary, health_summary("back"), "after-restart");
        publish(&hospital, request).await.expect("a publish once the database is back");
    });
    assert!(sandbox.log_text().contains("does not answer"), "the node said why it was not serving");
}

/// One audit sequencer at a time across nodes: the first node to start takes the
/// sequencer's lease and builds the tree and signs checkpoints; a second node leaves
/// them to it. Killed, the first node's lease lapses and the second takes over: it signs
/// checkpoints covering what was written since, and its export verifies against a
/// checkpoint signed by the first.
#[test]
fn one_node_sequences_the_audit_log_and_another_takes_over_when_it_dies() {
    use tio_proto::v1;

    use crate::support::records::*;
    use crate::support::{Options, Sandbox, tio_as};

    const SEQUENCES: &str = "this node now sequences the audit log";
    let server = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let options = Options {
        args: vec!["--set".into(), "audit.checkpoint_interval_seconds=1".into()],
        env: vec![
            ("TIO_STORE_ENGINE".into(), "postgres".into()),
            ("TIO_STORE_POSTGRES_URL".into(), server.create_database().unwrap()),
        ],
        ..Options::default()
    };
    let mut first = Sandbox::start_with(options);
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_until("the first node sequences", &|| first.log_text().contains(SEQUENCES));
    let second = first.start_peer("second-node");
    let work = tempfile::tempdir().unwrap();
    let public_key_file = first.write_audit_public_key(work.path());
    let before = work.path().join("before");
    let (ok, _, stderr) = tio_as(&first, "auditor", &["audit", "export", "--out", &arg(&before)]);
    assert!(ok, "{stderr}");

    let runtime = runtime();
    let on_second = |name: &str| runtime.block_on(as_professional_on(&second, name));
    let (hospital, auditor) = (on_second("hospital"), on_second("auditor"));
    let publish_some = |from: usize| {
        runtime.block_on(async {
            for i in from..from + 3 {
                let key = format!("p{i}");
                let request = publish_request(AMY, v1::Category::HealthSummary, health_summary(&key), &key);
                publish(&hospital, request).await.unwrap();
            }
        })
    };
    let signed_size = || {
        let request = auditor.request(v1::GetCheckpointRequest::default());
        runtime.block_on(auditor.audit().get_checkpoint(request)).unwrap().into_inner().tree_size
    };
    // The publishes' entries, by leaf index, and the tree's size as the query saw it.
    let publishes = || {
        let request = v1::QueryEntriesRequest { action: v1::AuditAction::Publish as i32, ..Default::default() };
        let page = runtime.block_on(auditor.audit().query_entries(auditor.request(request))).unwrap().into_inner();
        let indexes: Vec<u64> = page.entries.iter().map(|entry| entry.leaf_index).collect();
        (indexes, page.tree_size)
    };
    publish_some(0);
    wait_until("the first node sequences the first publishes", &|| {
        let (indexes, tree_size) = publishes();
        indexes.iter().all(|index| *index < tree_size)
    });
    assert!(!second.log_text().contains(SEQUENCES), "the second node left sequencing to the first");

    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(20));
    let killed = std::time::Instant::now();
    let before_size = signed_size();
    publish_some(3);
    // With no sequencer, the publishes' entries are committed but not yet in the tree,
    // and the query says so.
    let (indexes, tree_size) = publishes();
    assert_eq!(indexes.len(), 6, "{indexes:?}");
    assert!(indexes[..3].iter().all(|index| *index < tree_size), "{indexes:?} {tree_size}");
    assert!(indexes[3..].iter().all(|index| *index >= tree_size), "not yet sequenced: {indexes:?} {tree_size}");
    wait_until("the second node takes over", &|| second.log_text().contains(SEQUENCES));
    eprintln!("the second node took over sequencing {:?} after the first was killed", killed.elapsed());
    // Three publishes and the checkpoint read are written after `before_size`.
    wait_until("a checkpoint covering what was written since", &|| signed_size() > before_size + 3);
    let (indexes, tree_size) = publishes();
    assert!(indexes.iter().all(|index| *index < tree_size), "all sequenced now: {indexes:?} {tree_size}");

    let after = work.path().join("after");
    let server_address = format!("https://localhost:{}", second.address.port());
    let pki = arg(&first.pki.dir);
    let (status, _, stderr) = run_tio(
        &["audit", "export", "--out", &arg(&after), "--server", &server_address, "--dev-pki", &pki, "--as", "auditor"],
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert_export_extends(&after, &public_key_file, &before);
}

/// Keys on a shared store: a running node refuses to rotate (the other nodes' rings
/// would lack the new version), and the offline commands rotate and retire on
/// PostgreSQL with the node stopped; the node started again with the new ring reads
/// what was published before and after.
#[test]
fn keys_on_postgresql_are_rotated_and_retired_with_the_nodes_stopped() {
    use tio_proto::v1;

    use crate::support::records::*;
    use crate::support::{Options, Sandbox, tio_as};

    let server = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let url = server.create_database().unwrap();
    let options = Options {
        env: vec![("TIO_STORE_ENGINE".into(), "postgres".into()), ("TIO_STORE_POSTGRES_URL".into(), url.clone())],
        ..Options::default()
    };
    let mut sandbox = Sandbox::start_with(options);
    let publish_one = |sandbox: &Sandbox, key: &str| {
        runtime().block_on(async {
            let hospital = as_professional(sandbox, "hospital").await;
            let request = publish_request(AMY, v1::Category::HealthSummary, health_summary(key), key);
            publish(&hospital, request).await.unwrap();
        })
    };
    publish_one(&sandbox, "before");

    let (ok, stdout, stderr) = tio_as(&sandbox, "admin", &["keys", "rotate"]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("FAILED_PRECONDITION") && stderr.contains("other broker nodes share this store"),
        "{stderr}"
    );

    sandbox.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(sandbox.wait_exit(Duration::from_secs(30)).success());
    let keys = sandbox.data_dir().join("dev-keys").join("tio.keys");
    let data = sandbox.data_dir();
    let offline = |command: &[&str], extra: &[&str]| {
        let mut args = command.to_vec();
        let (keys, data) = (arg(&keys), arg(&data));
        args.extend(["--keys-file", &keys, "--data-dir", &data, "--engine", "postgres", "--postgres-url", &url]);
        args.extend(extra);
        run_tio(&args, &[])
    };
    let (status, stdout, stderr) = offline(&["keys", "rotate"], &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("version 2 is current"), "{stdout}");
    let (status, _, stderr) = offline(&["keys", "retire"], &["--kek-version", "1"]);
    assert!(status.success(), "{stderr}");
    let (status, report, stderr) = offline(&["store", "check"], &[]);
    assert!(status.success() && report.contains("OK: every record decrypts"), "{report}{stderr}");

    // The child's key, wrapped under the new version, serves the next publish.
    sandbox.start_stopped();
    publish_one(&sandbox, "after");
}

/// Checks that the audit export in `after` verifies under the key in `public_key_file`
/// and extends the checkpoint of the export in `before` (`tio audit verify --against`).
fn assert_export_extends(after: &std::path::Path, public_key_file: &std::path::Path, before: &std::path::Path) {
    let (after, key, against) = (arg(after), arg(public_key_file), arg(&before.join("checkpoint")));
    let (status, report, stderr) =
        run_tio(&["audit", "verify", &after, "--public-key", &key, "--against", &against], &[]);
    assert!(status.success(), "{report}{stderr}");
    assert!(report.contains("extends the older checkpoint"), "{report}");
}

/// Failover: a node connects to a primary and its synchronous standby with one
/// multi-host URL (`target_session_attrs=read-write`); the standby is made to hang, so
/// that a group's COMMIT waits on it, the primary is killed with SIGKILL (every process
/// of it) under a publish load whose acknowledgements the clients count, and the standby
/// is promoted by hand (`pg_promote`). See `publish_through_a_failover` for what holds.
#[test]
fn a_failover_to_the_synchronous_standby_loses_no_acknowledged_publish() {
    let mut primary = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let database = primary.create_database().unwrap().rsplit("dbname=").next().unwrap().to_owned();
    let standby = primary.start_standby().unwrap();
    let url = tio_pgtest::TestPostgres::url_across(&[&primary, &standby], &database);
    publish_through_a_failover(url, || {
        standby.pause();
        std::thread::sleep(Duration::from_millis(300));
        primary.kill();
        let killed = std::time::Instant::now();
        standby.resume();
        std::thread::sleep(Duration::from_millis(300));
        standby.promote().unwrap();
        eprintln!("promoted the standby {:?} after the kill", killed.elapsed());
    });
}

/// Failover with the standby's stream cut mid-commit: the standby hangs, a group's
/// COMMIT waits on it (seen in `pg_stat_activity`), its replication stream is cut (its
/// WAL receiver killed while hung), the primary is killed whole and the standby
/// promoted. The group in doubt usually never reached the standby and is settled as not
/// committed, then committed again; but the standby may have written its commit record
/// before it hung, unacknowledged, and then holds it: either way, what holds is what
/// `publish_through_a_failover` checks, and the outcome is printed.
#[test]
fn a_failover_with_the_standbys_stream_cut_mid_commit_loses_no_acknowledged_publish() {
    let mut primary = tio_pgtest::TestPostgres::start().expect("a test PostgreSQL starts (tests/run installs it)");
    let database = primary.create_database().unwrap().rsplit("dbname=").next().unwrap().to_owned();
    let standby = primary.start_standby().unwrap();
    let url = tio_pgtest::TestPostgres::url_across(&[&primary, &standby], &database);
    let settled = publish_through_a_failover(url, || {
        standby.pause();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while primary
            .psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
            .unwrap()
            .trim()
            == "0"
        {
            assert!(std::time::Instant::now() < deadline, "no COMMIT ever waited on the hung standby");
            std::thread::sleep(Duration::from_millis(20));
        }
        standby.cut_replication();
        primary.kill();
        standby.resume();
        standby.promote().unwrap();
    });
    let not_committed = settled.iter().filter(|line| line.contains("committed=false")).count();
    eprintln!("of {} groups settled, {not_committed} had not committed and were committed again", settled.len());
}

/// Failover under Patroni, as `deploy/postgres/` runs it: three members with
/// `synchronous_mode` and `synchronous_mode_strict`, etcd for the leader's lock. The
/// synchronous standby's PostgreSQL is made to hang, the leader's machine is lost (its
/// Patroni and its PostgreSQL killed with SIGKILL), and Patroni promotes the standby
/// once the leader's lock lapses. See `publish_through_a_failover` for what holds.
#[test]
fn a_patroni_failover_loses_no_acknowledged_publish() {
    use nix::sys::signal::Signal;

    let mut cluster =
        tio_pgtest::PatroniCluster::start(3).expect("a Patroni cluster starts (tests/run installs patroni and etcd)");
    let url = cluster.url();
    publish_through_a_failover(url, || {
        let members = cluster.members().unwrap();
        let role = |role: &str| members.iter().find(|member| member.role == role).unwrap().name.clone();
        let (leader, standby) = (role("Leader"), role("Sync Standby"));
        cluster.signal_postgres(&standby, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(300));
        cluster.kill(&leader);
        let killed = std::time::Instant::now();
        cluster.signal_postgres(&standby, Signal::SIGCONT);
        let members = cluster
            .wait_until("a new leader", |members| {
                members
                    .iter()
                    .any(|member| member.role == "Leader" && member.name != leader && member.state == "running")
            })
            .unwrap();
        eprintln!("Patroni promoted a standby {:?} after the leader was lost: {members:?}", killed.elapsed());
    });
}

/// Runs one node on the database of `url`, with eight publishers that count
/// acknowledgements (each retrying a refused publish under its idempotency key) and a
/// subscriber streaming throughout, and calls `fail_over` in the middle of the load.
/// Afterwards: every acknowledged publish is delivered, once (again only as a
/// redelivery), each publisher's in the order published; a publish repeated under an
/// acknowledged key gives the same update; a group's COMMIT went unanswered at the
/// failover and was settled; and the audit log exported afterwards verifies against the
/// checkpoint exported before. Returns the node's log lines that settled a group.
fn publish_through_a_failover(url: String, fail_over: impl FnOnce()) -> Vec<String> {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};

    use tio_proto::v1;

    use crate::support::records::*;
    use crate::support::stream::{Stream, create};
    use crate::support::{Options, Sandbox, tio_as};

    const PUBLISHERS: usize = 8;
    const BEFORE_KILL: usize = 80;
    const AFTER_PROMOTION: usize = 80;
    const LIMIT: Duration = Duration::from_secs(240);

    let options = Options {
        env: vec![("TIO_STORE_ENGINE".into(), "postgres".into()), ("TIO_STORE_POSTGRES_URL".into(), url)],
        ..Options::default()
    };
    let sandbox = Sandbox::start_with(options);
    let work = tempfile::tempdir().unwrap();
    let public_key_file = sandbox.write_audit_public_key(work.path());
    let export = |name: &str| {
        let dir = work.path().join(name);
        let (ok, _, stderr) = tio_as(&sandbox, "auditor", &["audit", "export", "--out", &arg(&dir)]);
        assert!(ok, "{stderr}");
        dir
    };

    let runtime = runtime();
    let (hospital, send_team) = runtime.block_on(async {
        let hospital = as_professional(&sandbox, "hospital").await;
        let send_team = as_professional(&sandbox, "send-team").await;
        let consent = consent_request(&[v1::Category::HealthSummary]);
        hospital.consents().record_consent(hospital.request(consent)).await.unwrap();
        declare_allocation(&send_team).await;
        create(&send_team, "main", &[v1::Category::HealthSummary], None).await;
        (Arc::new(hospital), Arc::new(send_team))
    });
    let before = export("before");

    let started = std::time::Instant::now();
    // Idempotency key -> the update id its acknowledgement named.
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let refusals: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (delivered, subscriber_errors) = runtime.block_on(async {
        // A subscriber streaming throughout, opening its stream again whenever it ends.
        let expected: Arc<OnceLock<usize>> = Arc::default();
        let subscriber = {
            let (send_team, expected) = (send_team.clone(), expected.clone());
            tokio::spawn(async move {
                let mut delivered: Vec<v1::Delivery> = Vec::new();
                let mut distinct = HashSet::new();
                let mut errors = Vec::new();
                'streams: loop {
                    assert!(started.elapsed() < LIMIT, "the subscriber never caught up: {errors:?}");
                    let mut stream = match Stream::open(&send_team, "main", 0).await {
                        Ok(stream) => stream,
                        Err(status) => {
                            errors.push(format!("{:?}: {}", status.code(), status.message()));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    loop {
                        if expected.get().is_some_and(|expected| distinct.len() >= *expected) {
                            break 'streams;
                        }
                        assert!(started.elapsed() < LIMIT, "the subscriber never caught up: {errors:?}");
                        let message = tokio::time::timeout(Duration::from_millis(500), stream.responses.message());
                        match message.await {
                            Err(_) => continue,
                            Ok(Ok(Some(v1::SubscribeResponse {
                                message: Some(v1::subscribe_response::Message::Delivery(delivery)),
                            }))) => {
                                let number = delivery.delivery_number;
                                distinct.insert(delivery.update_id.clone());
                                delivered.push(delivery);
                                let ack = v1::Ack { delivery_numbers: vec![number] };
                                let ack =
                                    v1::SubscribeRequest { message: Some(v1::subscribe_request::Message::Ack(ack)) };
                                let _ = stream.requests.send(ack).await;
                            }
                            Ok(Ok(Some(_))) => {}
                            Ok(Ok(None)) => continue 'streams,
                            Ok(Err(status)) => {
                                errors.push(format!("{:?}: {}", status.code(), status.message()));
                                continue 'streams;
                            }
                        }
                    }
                }
                (delivered, errors)
            })
        };

        // Publishers, each retrying a publish under its idempotency key until acknowledged.
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|writer| {
                let (hospital, acked, refusals, stop) =
                    (hospital.clone(), acked.clone(), refusals.clone(), stop.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        let key = format!("w{writer}-{i:04}");
                        let value = health_summary(&key);
                        let request = publish_request(AMY, v1::Category::HealthSummary, value, &key);
                        loop {
                            assert!(started.elapsed() < LIMIT, "a publish was never acknowledged");
                            match publish(&hospital, request.clone()).await {
                                Ok(response) => {
                                    acked.lock().unwrap().insert(key, response.update_id);
                                    break;
                                }
                                Err(status) => {
                                    refusals.lock().unwrap().push(format!("{:?}: {}", status.code(), status.message()));
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let count = || acked.lock().unwrap().len();
        let wait_for = |count_at_least: usize| {
            let count = &count;
            async move {
                while count() < count_at_least {
                    assert!(started.elapsed() < LIMIT, "publishing stalled at {} acknowledgements", count());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_for(BEFORE_KILL).await;
        let at_kill = count();
        tokio::task::block_in_place(fail_over);
        eprintln!("{at_kill} publishes acknowledged before the failover");
        wait_for(count() + AFTER_PROMOTION).await;
        stop.store(true, Ordering::Release);
        for publisher in publishers {
            publisher.await.unwrap();
        }
        expected.set(count()).unwrap();
        subscriber.await.unwrap()
    });

    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    let refusals = Arc::try_unwrap(refusals).unwrap().into_inner().unwrap();
    eprintln!(
        "{} publishes acknowledged; {} refused and retried; the subscriber's streams ended {} times",
        acked.len(),
        refusals.len(),
        subscriber_errors.len()
    );
    assert!(
        refusals.iter().all(|refusal| refusal.starts_with("Unavailable")),
        "a publish refused during the failover is refused as UNAVAILABLE, to be tried again: {refusals:?}"
    );

    // Every acknowledged publish delivered, each update once (again only as a redelivery
    // of an unacked one), and each publisher's updates in the order it published them.
    let mut firsts: Vec<&v1::Delivery> = Vec::new();
    let mut seen = HashSet::new();
    for delivery in &delivered {
        if seen.insert(delivery.update_id.clone()) {
            firsts.push(delivery);
        } else {
            assert!(delivery.redelivery, "update {} delivered twice as new", delivery.update_id);
        }
    }
    let acked_ids: HashSet<&String> = acked.values().collect();
    assert_eq!(acked_ids.len(), acked.len(), "every acknowledged publish has an update of its own");
    let delivered_ids: HashSet<&String> = firsts.iter().map(|delivery| &delivery.update_id).collect();
    assert_eq!(delivered_ids, acked_ids, "exactly the acknowledged publishes are delivered");
    let key_of: BTreeMap<&String, &String> = acked.iter().map(|(key, id)| (id, key)).collect();
    let mut last_of_writer: BTreeMap<&str, &str> = BTreeMap::new();
    for delivery in &firsts {
        let key = key_of[&delivery.update_id];
        let (writer, _) = key.split_once('-').unwrap();
        if let Some(last) = last_of_writer.insert(writer, key) {
            assert!(last < key.as_str(), "{key} delivered after {last}");
        }
    }

    // Publishing an acknowledged key again gives its update, not a second one.
    runtime.block_on(async {
        for (key, update_id) in acked.iter().step_by(7) {
            let value = health_summary(key);
            let again =
                publish(&hospital, publish_request(AMY, v1::Category::HealthSummary, value, key)).await.unwrap();
            assert_eq!(&again.update_id, update_id, "{key} stored once");
        }
    });

    // The audit log after the failover extends the one before it, and verifies.
    let after = export("after");
    assert_export_extends(&after, &public_key_file, &before);
    let log = sandbox.log_text();
    let settled: Vec<String> = log.lines().filter(|line| line.contains("settled a group")).map(str::to_owned).collect();
    eprintln!("groups whose COMMIT went unanswered, settled: {settled:?}");
    assert!(!settled.is_empty(), "a group's COMMIT went unanswered at the kill, and was settled:\n{log}");
    settled
}
