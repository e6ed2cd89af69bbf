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
    /// social-care, admin or auditor.
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

impl ConnectionArgs {
    /// Connects over mutual TLS with these flags.
    pub(crate) async fn connect(&self) -> anyhow::Result<tio_client::Client> {
        Ok(tio_client::Client::connect(&self.settings()?).await?)
    }

    /// Resolves the flags into settings.
    pub(crate) fn settings(&self) -> Result<ConnectionSettings, UsageError> {
        let mut settings = match (&self.dev_pki, &self.as_name) {
            (Some(dir), Some(name)) => ConnectionSettings::from_dev_pki(self.server.clone(), dir, name),
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
