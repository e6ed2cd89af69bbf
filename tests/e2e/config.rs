//! Configuration through the real binary: precedence, errors, the commented default.

use crate::support::run_tio;

fn listen_line(stdout: &str) -> &str {
    stdout.lines().find(|line| line.starts_with("listen = ")).expect("listen key printed")
}

#[test]
fn precedence_is_file_then_environment_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tio.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1001\"\n[log]\nformat = \"json\"\n").unwrap();
    let file = file.display().to_string();

    let (status, stdout, stderr) = run_tio(&["serve", "--dev", "--config", &file, "--print-config"], &[]);
    assert!(status.success(), "{stderr}");
    assert_eq!(listen_line(&stdout), "listen = \"127.0.0.1:1001\"");
    assert!(stdout.contains("format = \"json\""), "{stdout}");

    let env = [("TIO_LISTEN", "127.0.0.1:1002")];
    let (_, stdout, _) = run_tio(&["serve", "--dev", "--config", &file, "--print-config"], &env);
    assert_eq!(listen_line(&stdout), "listen = \"127.0.0.1:1002\"");

    let (_, stdout, _) =
        run_tio(&["serve", "--dev", "--config", &file, "--listen", "127.0.0.1:1003", "--print-config"], &env);
    assert_eq!(listen_line(&stdout), "listen = \"127.0.0.1:1003\"");
    assert!(stdout.contains("format = \"json\""), "a key no layer overrides keeps the file's value: {stdout}");

    // The file can also come from TIO_CONFIG.
    let (_, stdout, _) = run_tio(&["serve", "--dev", "--print-config"], &[("TIO_CONFIG", &file)]);
    assert_eq!(listen_line(&stdout), "listen = \"127.0.0.1:1001\"");
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tio.toml");
    std::fs::write(&file, "[limits]\nmax_message_bytes = \"big\"\n").unwrap();
    let (status, _, stderr) = run_tio(&["serve", "--dev", "--config", &file.display().to_string()], &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`limits.max_message_bytes`"), "{stderr}");

    let (status, _, stderr) =
        run_tio(&["serve", "--dev", "--print-config"], &[("TIO_LIMITS_DRAIN_TIMEOUT_SECONDS", "soon")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("TIO_LIMITS_DRAIN_TIMEOUT_SECONDS"), "{stderr}");

    let (status, _, stderr) = run_tio(&["serve", "--listen", "127.0.0.1:7443", "--print-config"], &[]);
    assert_eq!(status.code(), Some(2), "outside development mode TLS files are required: {stderr}");
    assert!(stderr.contains("tls.ca_file"), "{stderr}");
}

#[test]
fn the_example_production_configuration_loads() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/tio.toml");
    let (status, stdout, stderr) = run_tio(&["serve", "--config", example, "--print-config"], &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("keys_file = \"/etc/tio/keys/tio.keys\""), "{stdout}");
    assert!(stdout.contains("dev = false"), "{stdout}");
}

#[test]
fn gen_config_prints_a_commented_configuration_that_loads() {
    let (status, stdout, _) = run_tio(&["serve", "gen-config"], &[]);
    assert!(status.success());
    assert!(stdout.lines().filter(|line| line.starts_with('#')).count() > 20, "the default is commented");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tio.toml");
    std::fs::write(&file, &stdout).unwrap();
    let (status, _, stderr) =
        run_tio(&["serve", "--dev", "--config", &file.display().to_string(), "--print-config"], &[]);
    assert!(status.success(), "{stderr}");
}

/// `deploy/postgres/tio-node.toml` is the `[store]` of the example configuration for a
/// node on the Patroni cluster: merged in, it loads and says what the runbook says.
#[test]
fn the_example_postgresql_node_configuration_loads() {
    let example = include_str!("../../deploy/tio.toml");
    let node = include_str!("../../deploy/postgres/tio-node.toml");
    let start = example.find("\n[store]\n").expect("the example has a [store]");
    let end = start + 1 + example[start + 1..].find("\n[").expect("a section after [store]");
    let merged = format!("{}{}\n{node}", &example[..start + 1], &example[end + 1..]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tio.toml");
    std::fs::write(&file, merged).unwrap();
    let (status, stdout, stderr) = run_tio(&["serve", "--config", &file.display().to_string(), "--print-config"], &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("engine = \"postgres\""), "{stdout}");
    assert!(stdout.contains("target_session_attrs=read-write"), "{stdout}");
    assert!(stdout.contains("password_file = \"/etc/tio/postgres-password\""), "{stdout}");
}
