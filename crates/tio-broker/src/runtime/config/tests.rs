use std::collections::BTreeMap;
use std::io::Write;

use super::*;

fn write_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn dev_sources(file: Option<&tempfile::NamedTempFile>) -> ConfigSources {
    let mut env = BTreeMap::new();
    env.insert("TIO_DEV".to_owned(), "true".to_owned());
    ConfigSources { file: file.map(|f| f.path().to_owned()), env, flags: Vec::new() }
}

fn key_error(result: Result<Config, ConfigError>) -> (String, String, String) {
    match result {
        Err(ConfigError::Key { key, source_layer, message }) => (key, source_layer, message),
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn the_commented_default_loads_to_the_built_in_defaults() {
    let file = write_file(DEFAULT_CONFIG_TOML);
    let from_file = Config::load(&dev_sources(Some(&file))).unwrap();
    let built_in = Config::load(&dev_sources(None)).unwrap();
    assert_eq!(from_file, built_in);
    assert_eq!(built_in.limits, LimitsConfig::default());
}

#[test]
fn precedence_is_file_then_env_then_flag() {
    let file = write_file("listen = \"127.0.0.1:1001\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n");
    let mut sources = dev_sources(Some(&file));
    let only_file = Config::load(&sources).unwrap();
    assert_eq!(only_file.listen.port(), 1001);

    sources.env.insert("TIO_LISTEN".into(), "127.0.0.1:1002".into());
    sources.env.insert("TIO_LOG_LEVEL".into(), "warn".into());
    let with_env = Config::load(&sources).unwrap();
    assert_eq!((with_env.listen.port(), with_env.log.level.as_str()), (1002, "warn"));
    assert_eq!(with_env.log.format, LogFormat::Json, "keys no layer overrides keep the file's value");

    sources.flags.push(("listen".into(), "127.0.0.1:1003".into()));
    let with_flag = Config::load(&sources).unwrap();
    assert_eq!((with_flag.listen.port(), with_flag.log.level.as_str()), (1003, "warn"));
}

#[test]
fn unrelated_tio_variables_are_ignored() {
    let mut sources = dev_sources(None);
    sources.env.insert("TIO_SERVER".into(), "https://localhost:7443".into());
    sources.env.insert("TIO_CERT".into(), "hospital.crt".into());
    assert!(Config::load(&sources).is_ok());
}

#[test]
fn errors_name_the_key_and_the_layer() {
    let file = write_file("[limits]\nmax_message_bytes = \"big\"\n");
    let (key, layer, _) = key_error(Config::load(&dev_sources(Some(&file))));
    assert_eq!((key.as_str(), layer.as_str()), ("limits.max_message_bytes", "the configuration file"));

    let mut sources = dev_sources(None);
    sources.env.insert("TIO_LIMITS_DRAIN_TIMEOUT_SECONDS".into(), "soon".into());
    let (key, layer, message) = key_error(Config::load(&sources));
    assert_eq!(key, "limits.drain_timeout_seconds");
    assert_eq!(layer, "environment variable TIO_LIMITS_DRAIN_TIMEOUT_SECONDS");
    assert_eq!(message, "must be a whole number");

    let mut sources = dev_sources(None);
    sources.flags.push(("listen".into(), "not an address".into()));
    let (key, layer, _) = key_error(Config::load(&sources));
    assert_eq!((key.as_str(), layer.as_str()), ("listen", "the command line"));

    let mut sources = dev_sources(None);
    sources.flags.push(("agencies".into(), "x".into()));
    assert_eq!(key_error(Config::load(&sources)).0, "agencies");
}

#[test]
fn unknown_keys_are_refused() {
    let file = write_file("[limits]\nmax_mesage_bytes = 10\n");
    let (key, _, message) = key_error(Config::load(&dev_sources(Some(&file))));
    assert_eq!(key, "limits.max_mesage_bytes");
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn semantic_checks_name_their_key() {
    let cases = [
        ("version = 2\n", "version"),
        ("listen = \"0.0.0.0:7443\"\n", "listen"),
        ("[limits]\nmax_message_bytes = 100\n", "limits.max_message_bytes"),
        ("[limits]\nkeepalive_interval_seconds = 0\n", "limits.keepalive_interval_seconds"),
        ("[telemetry]\notlp_endpoint = \"collector:4317\"\n", "telemetry.otlp_endpoint"),
        ("[identifiers]\nnhs_number_ranges = [[\"5\", \"4\"]]\n", "identifiers.nhs_number_ranges"),
        ("[[agencies]]\nid = \"Bad Id\"\nname = \"x\"\nsector = \"health\"\n", "agencies[0].id"),
        ("[[agencies]]\nid = \"gp\"\nname = \"x\"\nsector = \"police\"\n", "agencies[0].sector"),
        (
            "[[agencies]]\nid = \"gp\"\nname = \"x\"\nsector = \"health\"\nmay_read = [\"case_notes\"]\n",
            "agencies[0].may_read",
        ),
        ("revoked_fingerprints = [\"abc\"]\n", "revoked_fingerprints"),
        ("admins = [\"Root\"]\n", "admins"),
    ];
    for (text, expected_key) in cases {
        let file = write_file(text);
        let (key, _, _) = key_error(Config::load(&dev_sources(Some(&file))));
        assert_eq!(key, expected_key, "for {text:?}");
    }
}

#[test]
fn the_development_clock_is_refused_outside_development_mode_and_bounded() {
    let file = write_file("dev_clock_offset_days = 70\n");
    assert_eq!(Config::load(&dev_sources(Some(&file))).unwrap().dev_clock_offset_days, 70);
    let far = write_file("dev_clock_offset_days = -40000\n");
    assert_eq!(key_error(Config::load(&dev_sources(Some(&far)))).0, "dev_clock_offset_days");
    let production = write_file(
        "dev_clock_offset_days = 1\n[tls]\nca_file = \"ca.pem\"\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
    );
    let sources = ConfigSources { file: Some(production.path().to_owned()), ..ConfigSources::default() };
    let (key, _, message) = key_error(Config::load(&sources));
    assert_eq!(key, "dev_clock_offset_days");
    assert!(message.contains("development"), "{message}");
}

#[test]
fn production_needs_tls_files() {
    // Issue 12: with no file given, the error blamed "the configuration file".
    let sources = ConfigSources::default();
    let (key, layer, message) = key_error(Config::load(&sources));
    assert_eq!(key, "tls.ca_file");
    assert_eq!(layer, "the built-in defaults: no configuration file was given");
    assert!(message.contains("tio serve --dev"), "{message}");
    let file = write_file("version = 1\n");
    let sources = ConfigSources { file: Some(file.path().to_owned()), ..ConfigSources::default() };
    assert_eq!(key_error(Config::load(&sources)).1, "the configuration file");
}

#[test]
fn lists_from_the_environment_are_comma_separated() {
    let mut sources = dev_sources(None);
    sources.env.insert("TIO_ADMINS".into(), "ops, ops-2".into());
    assert_eq!(Config::load(&sources).unwrap().admins, vec!["ops".to_owned(), "ops-2".to_owned()]);
}

#[test]
fn configured_agencies_become_domain_agencies() {
    let file = write_file(
        "[[agencies]]\nid = \"gp\"\nname = \"Example Practice\"\nsector = \"health\"\nmay_publish = [\"health_summary\"]\nmay_read = [\"send_support\"]\n",
    );
    let config = Config::load(&dev_sources(Some(&file))).unwrap();
    let agencies = config.agencies().unwrap();
    assert_eq!(agencies.len(), 1);
    assert!(agencies[0].may_publish.contains(Category::HealthSummary));
    assert!(agencies[0].may_read.contains(Category::SendSupport));
    assert!(!agencies[0].may_read.contains(Category::HealthSummary));
}

#[test]
fn every_settable_key_exists_in_the_defaults() {
    let table = default_table();
    for (key, _) in settable_keys() {
        let optional = ["telemetry.otlp_endpoint", "store.keys_file"];
        let optional_postgres = key.starts_with("store.postgres.")
            && !["store.postgres.pool_size", "store.postgres.stream_lease_seconds"].contains(&key);
        if optional.contains(&key) || optional_postgres || key.starts_with("tls.") {
            continue; // Optional keys, absent by default.
        }
        let mut current = &table;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            current = current[*part].as_table().unwrap();
        }
        assert!(current.contains_key(parts[parts.len() - 1]), "{key}");
    }
}

#[test]
fn retention_rules_are_read_per_category_and_a_bad_one_names_its_key() {
    let file = write_file(
        "[retention]\nyears_after_last_update = 10\n[retention.categories]\neducation_placement = \"6 years after last update\"\n",
    );
    let config = Config::load(&dev_sources(Some(&file))).unwrap();
    let policy = config.retention.policy().unwrap();
    use tio_core::retention::RetentionRule;
    assert_eq!(
        policy.rules.get(&tio_core::Category::EducationPlacement),
        Some(&RetentionRule::YearsAfterLastUpdate(6))
    );
    assert_eq!(
        policy.rules.get(&tio_core::Category::HealthSummary),
        Some(&RetentionRule::UntilBirthday(25)),
        "the default stays"
    );
    assert_eq!(policy.fallback_years, 10);

    let file = write_file("[retention.categories]\nhealth_summary = \"forever\"\n");
    let (key, _, message) = key_error(Config::load(&dev_sources(Some(&file))));
    assert_eq!(key, "retention.categories.health_summary");
    assert!(message.contains("25th birthday"), "{message}");
    let file = write_file("[retention.categories]\nshoe_size = \"25th birthday\"\n");
    let (key, _, message) = key_error(Config::load(&dev_sources(Some(&file))));
    assert_eq!(key, "retention.categories.shoe_size");
    assert!(message.contains("unknown category"), "{message}");
    let mut sources = dev_sources(None);
    sources.flags.push(("retention.years_after_last_update".into(), "0".into()));
    assert_eq!(key_error(Config::load(&sources)).0, "retention.years_after_last_update");
}

#[test]
fn the_postgres_engine_needs_its_url_and_reads_its_password_from_a_file_or_the_environment() {
    let mut sources = dev_sources(None);
    sources.env.insert("TIO_STORE_ENGINE".to_owned(), "postgres".to_owned());
    let (key, _, message) = key_error(Config::load(&sources));
    assert_eq!(key, "store.postgres.url");
    assert!(message.contains("required"), "{message}");

    sources.env.insert("TIO_STORE_POSTGRES_URL".to_owned(), "postgresql://tio:inline-pw@db1/tio".to_owned());
    let config = Config::load(&sources).unwrap();
    assert_eq!(config.store.engine, EngineKind::Postgres);
    assert!(!format!("{config:?}").contains("inline-pw"), "the connection string stays out of Debug output");
    let options = config.store.options(Some("from-env")).unwrap().postgres.unwrap();
    assert_eq!(options.password.as_deref(), Some("from-env"));
    assert_eq!(options.pool_size, tio_store::PostgresOptions::DEFAULT_POOL_SIZE);

    let password = write_file("from-file\n");
    sources.flags.push(("store.postgres.password_file".to_owned(), password.path().display().to_string()));
    sources.flags.push(("store.postgres.pool_size".to_owned(), "4".to_owned()));
    let config = Config::load(&sources).unwrap();
    let options = config.store.options(Some("from-env")).unwrap().postgres.unwrap();
    assert_eq!(options.password.as_deref(), Some("from-file"), "the file wins, its newline dropped");
    assert_eq!(options.pool_size, 4);

    sources.flags.push(("store.postgres.password_file".to_owned(), "/nonexistent/pw".to_owned()));
    let err = Config::load(&sources).unwrap().store.options(None).unwrap_err();
    assert!(err.contains("store.postgres.password_file"), "{err}");

    sources.flags.push(("store.postgres.pool_size".to_owned(), "0".to_owned()));
    assert_eq!(key_error(Config::load(&sources)).0, "store.postgres.pool_size");

    let log = Config::load(&dev_sources(None)).unwrap();
    assert!(log.store.options(None).unwrap().postgres.is_none(), "other engines carry no database options");

    let ca = write_file("-----BEGIN CERTIFICATE-----\n");
    let mut tls = dev_sources(None);
    tls.env.insert("TIO_STORE_ENGINE".to_owned(), "postgres".to_owned());
    tls.env.insert("TIO_STORE_POSTGRES_URL".to_owned(), "host=db1 dbname=tio".to_owned());
    assert!(Config::load(&tls).unwrap().store.options(None).unwrap().postgres.unwrap().tls.is_none());
    tls.flags.push(("store.postgres.ca_file".to_owned(), ca.path().display().to_string()));
    let options = Config::load(&tls).unwrap().store.options(None).unwrap().postgres.unwrap();
    assert_eq!(options.tls.unwrap().ca_pem, b"-----BEGIN CERTIFICATE-----\n");
    tls.flags.push(("store.postgres.cert_file".to_owned(), ca.path().display().to_string()));
    let err = Config::load(&tls).unwrap().store.options(None).unwrap_err();
    assert!(err.contains("go together"), "{err}");
}
