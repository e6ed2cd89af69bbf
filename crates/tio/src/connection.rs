//! The connection flags every client command shares.

use std::path::PathBuf;

use clap::Args;
use tio_client::{ConnectionSettings, DEFAULT_SERVER};

/// How to reach and authenticate to a broker.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectionArgs {
    /// Broker URL.
    #[arg(long, env = "TIO_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub(crate) server: String,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long, env = "TIO_CA", value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// This client's certificate (PEM).
    #[arg(long, env = "TIO_CERT", value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "TIO_KEY", value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// Development PKI directory: shorthand for --ca DIR/ca.crt --cert DIR/NAME.crt
    /// --key DIR/NAME.key, with NAME from --as.
    #[arg(long, value_name = "DIR", requires = "as_name", conflicts_with_all = ["cert", "key"])]
    pub(crate) dev_pki: Option<PathBuf>,
    /// Which certificate of --dev-pki to use: hospital, gp, school, send-team,
    /// social-care, adult-social-care, icb, admin or auditor.
    #[arg(long = "as", value_name = "NAME", requires = "dev_pki")]
    pub(crate) as_name: Option<String>,
    /// The professional acting, sent with every call as x-tio-professional.
    #[arg(long, env = "TIO_PROFESSIONAL", value_name = "ID")]
    pub(crate) professional: Option<String>,
}

/// A connection flag combination that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(String);

impl UsageError {
    /// Returns the error with this message, which names the flag at fault.
    pub(crate) fn new(message: impl Into<String>) -> UsageError {
        UsageError(message.into())
    }
}

/// Checks that `dir` holds a certificate for `name`, listing the names it holds if not.
fn check_dev_pki_name(dir: &std::path::Path, name: &str) -> Result<(), UsageError> {
    if dir.join(format!("{name}.crt")).is_file() {
        return Ok(());
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|err| UsageError::new(format!("--dev-pki {}: cannot read it: {err}", dir.display())))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".crt").map(str::to_owned))
        .filter(|found| found != "ca" && found != "server")
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(UsageError::new(format!(
            "--dev-pki {}: holds no client certificates (make them with `tio dev-pki --out DIR`)",
            dir.display()
        )));
    }
    // A development PKI made before an agency joined the development set lacks it.
    let hint = if tio_broker::pki::dev_pki_names().iter().any(|known| known == name) {
        " (it was made before that development agency existed: make a new one with `tio dev-pki --out NEW_DIR`)"
    } else {
        ""
    };
    Err(UsageError::new(format!(
        "--as {name}: {} holds no certificate for `{name}`; it has: {}{hint}",
        dir.display(),
        names.join(", ")
    )))
}

impl ConnectionArgs {
    /// Connects over mutual TLS with these flags.
    pub(crate) async fn connect(&self) -> anyhow::Result<tio_client::Client> {
        Ok(tio_client::Client::connect(&self.settings()?).await?)
    }

    /// Connects for a call an agency makes on behalf of a professional, who must be
    /// named: the broker would refuse the call, naming its header rather than the flag.
    pub(crate) async fn connect_agency(&self) -> anyhow::Result<tio_client::Client> {
        let settings = self.settings()?;
        if self.professional.as_deref().is_none_or(str::is_empty) {
            return Err(UsageError::new(
                "--professional is required: name the professional acting (your staff id), or set TIO_PROFESSIONAL",
            )
            .into());
        }
        Ok(tio_client::Client::connect(&settings).await?)
    }

    /// Returns these flags as they would be typed again (with a leading space), for a
    /// command printed as a hint.
    pub(crate) fn describe(&self) -> String {
        let mut flags = format!(" --server {}", self.server);
        match (&self.dev_pki, &self.as_name) {
            (Some(dir), Some(name)) => flags.push_str(&format!(" --dev-pki {} --as {name}", dir.display())),
            _ => {
                for (flag, value) in [("--ca", &self.ca), ("--cert", &self.cert), ("--key", &self.key)] {
                    if let Some(path) = value {
                        flags.push_str(&format!(" {flag} {}", path.display()));
                    }
                }
            }
        }
        flags
    }

    /// Resolves the flags into settings.
    pub(crate) fn settings(&self) -> Result<ConnectionSettings, UsageError> {
        let mut settings = match (&self.dev_pki, &self.as_name) {
            (Some(dir), Some(name)) => {
                check_dev_pki_name(dir, name)?;
                ConnectionSettings::from_dev_pki(self.server.clone(), dir, name)
            }
            _ => {
                let need = |value: &Option<PathBuf>, flag: &str| {
                    value
                        .clone()
                        .ok_or_else(|| UsageError(format!("{flag} is required (or use --dev-pki DIR --as NAME)")))
                };
                ConnectionSettings {
                    server: self.server.clone(),
                    ca: need(&self.ca, "--ca")?,
                    cert: need(&self.cert, "--cert")?,
                    key: need(&self.key, "--key")?,
                    professional: None,
                }
            }
        };
        if let Some(ca) = &self.ca {
            settings.ca = ca.clone();
        }
        settings.professional = self.professional.clone();
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing certificate lists what the directory has, and says why when the name
    /// is a development agency the directory predates.
    #[test]
    fn a_missing_dev_certificate_is_named_with_what_exists_and_why() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["ca.crt", "server.crt", "hospital.crt", "school.crt"] {
            std::fs::write(dir.path().join(file), b"-").unwrap();
        }
        assert!(check_dev_pki_name(dir.path(), "hospital").is_ok());
        let older = check_dev_pki_name(dir.path(), "icb").unwrap_err().to_string();
        assert!(older.starts_with("--as icb: ") && older.contains("it has: hospital, school"), "{older}");
        assert!(older.contains("made before that development agency existed"), "{older}");
        let unknown = check_dev_pki_name(dir.path(), "nobody").unwrap_err().to_string();
        assert!(unknown.ends_with("it has: hospital, school"), "{unknown}");
    }
}
