//! The auditor's console (`tio console`): a web application for data-protection
//! officers and council administrators, which is itself a client of the broker over
//! mutual TLS with the auditor's (or admin's) certificate. It adds no privileged
//! surface to the broker: every page that reads personal data is a call to the
//! broker's `AuditService`, audited there as the auditor, with the person's name as
//! the professional.
//!
//! Pages are rendered on the server (maud) with the NHS.UK frontend's styles, served
//! from the binary (`assets`); they need no JavaScript. An NHS number is entered in a
//! form and sent in a POST body, never in a URL, and shown masked.
//!
//! It serves the overview (the latest signed checkpoint, verified against the pinned
//! public key, and the log's activity in counts, `summary`), the audit log (filtered by time, agency, action, outcome and child,
//! paged), each entry (its inclusion in a signed checkpoint proved here), and a child's
//! page (the subject-access report: who saw what, when and why, and what was refused);
//! and, with an admin's certificate, the registry (suspend and reinstate, confirmed).
//!
//! Nobody uses it without signing in (`session`: a one-time link printed where it
//! runs, a session cookie that lapses after 15 idle minutes, a token in every form);
//! off loopback it serves only HTTPS (`tls`).

#![warn(missing_docs)]

mod assets;
mod family;
mod integrity;
mod pages;
mod pdf;
mod registry;
mod session;
mod summary;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Form, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tio_audit::note::Verifier;
use tio_client::Client;
use tio_proto::v1;

use crate::pages::Viewer;
pub use crate::session::Announce;
use crate::session::{Sessions, SignedIn};

/// Why the console could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A non-loopback listening address without TLS.
    #[error(
        "--listen {0}: the console serves a non-loopback address only over TLS (its sign-in links and session cookies \
         would otherwise cross the network in clear): give --tls-cert and --tls-key, or listen on 127.0.0.1"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The pinned public key does not parse.
    #[error("the pinned public key does not parse: {0}")]
    Key(String),
    /// The console's TLS certificate or key cannot be used.
    #[error("the console's TLS files: {0}")]
    Tls(String),
    /// A built-in Fluent catalogue does not parse.
    #[error("a built-in catalogue of the family's report: {0}")]
    Catalogue(String),
    /// The system gave no randomness for a token.
    #[error("no randomness for the console's tokens: {0}")]
    Random(String),
    /// The broker could not be reached.
    #[error("cannot reach the broker: {0}")]
    Broker(#[from] tio_client::ClientError),
}

/// The console's own TLS certificate chain and private key (PEM files), to serve
/// HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// How the console runs.
pub struct ConsoleOptions {
    /// Where it listens: a loopback address, or any address with `tls`.
    pub listen: SocketAddr,
    /// Serves HTTPS with these files (required off loopback).
    pub tls: Option<TlsFiles>,
    /// The broker, connected as an auditor or admin.
    pub client: Client,
    /// The log's public key pinned by the auditor (`ORIGIN+KEYHASH+BASE64`); without it
    /// the console trusts the key the broker gives, and says so on every page.
    pub pinned_key: Option<String>,
    /// Where each one-time sign-in link is told: the first at once, the next whenever
    /// one is used (the binary prints them on its standard output).
    pub announce: Announce,
}

/// What every request shares.
struct Console {
    /// The console's connection to the broker; each signed-in person's calls go
    /// through a copy naming them.
    client: Client,
    verifier: Verifier,
    pinned: bool,
    sessions: Sessions,
    /// The family report's words, in every language built in.
    catalogues: family::Catalogues,
    /// The overview's counts, kept up to date from the log.
    summary: summary::Summary,
}

/// A console bound to its address, ready to serve.
pub struct BoundConsole {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    console: Arc<Console>,
}

impl BoundConsole {
    /// The address it listens on (with the port chosen, if 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr, ConsoleError> {
        let address = self.listener.local_addr();
        address.map_err(|source| ConsoleError::Listen { address: SocketAddr::from(([127, 0, 0, 1], 0)), source })
    }

    /// The console's address as a browser opens it (`http://127.0.0.1:8080/`).
    pub fn url(&self) -> Result<String, ConsoleError> {
        Ok(base_url(self.local_addr()?, self.tls.is_some()))
    }

    /// Serves until `shutdown` completes. First starts counting the log for the
    /// overview, in the background: pages do not wait for it.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ConsoleError> {
        let address = self.local_addr()?;
        let console = self.console;
        let counter = console.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match counter.summary.refresh(&counter.client).await {
                Ok(counts) => tracing::info!(
                    entries = counts.next,
                    millis = started.elapsed().as_millis() as u64,
                    "the console counted the audit log"
                ),
                Err(status) => tracing::warn!(error = %status.message(), "the console could not count the audit log"),
            }
        });
        let router = Router::new()
            .route("/", get(overview))
            .route("/audit", get(audit_form).post(audit_results))
            .route("/child", get(child_form).post(child_report))
            .route("/child/family", post(family::page))
            .route("/child/family.pdf", post(family::pdf))
            .route("/entry/{leaf}", get(entry))
            .route("/integrity", get(integrity::form).post(integrity::compare))
            .route("/integrity/export", post(integrity::verify_upload))
            .route("/registry", get(registry::list))
            .route("/registry/{id}/{what}", post(registry::change))
            .route("/sign-in", get(session::sign_in_form).post(session::sign_in))
            .route("/sign-out", post(session::sign_out))
            .route("/assets/nhsuk-frontend.min.css", get(assets::stylesheet))
            .route("/assets/images/{name}", get(assets::image))
            .layer(axum::middleware::from_fn_with_state(console.clone(), session::require_session))
            .layer(axum::extract::DefaultBodyLimit::max(session::MAX_FORM_BYTES))
            .layer(axum::middleware::map_response(security_headers))
            .layer(axum::middleware::from_fn(log_request))
            .with_state(console);
        match self.tls {
            None => axum::serve(self.listener, router)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|source| ConsoleError::Listen { address, source }),
            Some(acceptor) => tls::serve(self.listener, acceptor, router, shutdown).await,
        }
    }
}

/// The address a browser opens.
fn base_url(address: SocketAddr, tls: bool) -> String {
    format!("{}://{address}/", if tls { "https" } else { "http" })
}

/// Binds the console's address (loopback, or any with TLS) and reads the log's key
/// (the pinned one, or the broker's); announces the first sign-in link.
pub async fn bind(options: ConsoleOptions) -> Result<BoundConsole, ConsoleError> {
    if !options.listen.ip().is_loopback() && options.tls.is_none() {
        return Err(ConsoleError::NotLoopback(options.listen));
    }
    let tls = options.tls.as_ref().map(tls::acceptor).transpose()?;
    let (key, pinned) = match options.pinned_key {
        Some(key) => (key, true),
        None => {
            let request = options.client.request(v1::GetPublicKeyRequest {});
            let key = options.client.audit().get_public_key(request).await.map_err(tio_client::ClientError::from)?;
            (key.into_inner().verifier_key, false)
        }
    };
    let verifier = Verifier::parse(key.trim()).map_err(|err| ConsoleError::Key(err.to_string()))?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ConsoleError::Listen { address: options.listen, source })?;
    let address = listener.local_addr().map_err(|source| ConsoleError::Listen { address: options.listen, source })?;
    let sessions = Sessions::new(base_url(address, tls.is_some()), tls.is_some(), options.announce)?;
    Ok(BoundConsole {
        listener,
        tls,
        console: Arc::new(Console {
            client: options.client,
            verifier,
            pinned,
            sessions,
            catalogues: family::Catalogues::load()?,
            summary: summary::Summary::default(),
        }),
    })
}

/// Logs each request's method, path and status. Only the path: the query of a sign-in
/// link holds its token, and nothing personal is ever in a path (an NHS number travels
/// only in a form's body).
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::info!(%method, %path, status = response.status().as_u16(), micros, "console request");
    response
}

/// The headers every answer carries: a strict Content-Security-Policy (everything from
/// the console itself, no framing, forms posted only to it), no sniffing, no referrer
/// (no address of the console leaks to another site), and, except for the static
/// assets, no caching of pages that may hold personal data.
async fn security_headers(mut response: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A page, or the broker's refusal shown as a page.
fn page_or_error(result: Result<maud::Markup, tonic::Status>, viewer: &Viewer<'_>) -> Response {
    match result {
        Ok(markup) => Html(markup.into_string()).into_response(),
        Err(status) => {
            let code = match status.code() {
                tonic::Code::InvalidArgument => axum::http::StatusCode::BAD_REQUEST,
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => axum::http::StatusCode::FORBIDDEN,
                tonic::Code::NotFound => axum::http::StatusCode::NOT_FOUND,
                _ => axum::http::StatusCode::BAD_GATEWAY,
            };
            (code, Html(pages::error(&status, viewer).into_string())).into_response()
        }
    }
}

async fn overview(State(console): State<Arc<Console>>, Extension(signed_in): Extension<SignedIn>) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let client = &signed_in.client;
    // The counts first, so that the checkpoint shown covers at least what they counted.
    let counts = match console.summary.current(client).await {
        Ok(summary::Activity::Counted(counts)) => Ok(counts),
        Ok(summary::Activity::Counting(Some(counts))) => Ok(counts),
        Ok(summary::Activity::Counting(None)) => {
            Err("the console is still counting the log (it reads it once, at start); reload in a moment".to_owned())
        }
        Err(status) => Err(status.message().to_owned()),
    };
    let checkpoint = async {
        let request = client.request(v1::GetCheckpointRequest {});
        Ok(client.audit().get_checkpoint(request).await?.into_inner())
    };
    let result = checkpoint.await.and_then(|checkpoint: v1::Checkpoint| {
        let today = summary::uk_today().ok_or_else(|| tonic::Status::internal("the clock is outside the calendar"))?;
        let opened = tio_audit::checkpoint::Checkpoint::open(&checkpoint.signed_note, &console.verifier);
        let counts = counts.as_ref().map_err(Clone::clone);
        Ok(pages::overview(&checkpoint, opened.map_err(|err| err.to_string()), counts, today, &viewer))
    });
    page_or_error(result, &viewer)
}

/// One entry, with its inclusion in a signed checkpoint checked here: the entry's leaf
/// hash, the broker's inclusion proof and the checkpoint's root, under the pinned key.
async fn entry(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    axum::extract::Path(leaf): axum::extract::Path<u64>,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let client = &signed_in.client;
    let result = async {
        let to_index = leaf.checked_add(1).ok_or_else(|| tonic::Status::invalid_argument("leaf: out of range"))?;
        let request = client.request(v1::ExportEntriesRequest { from_index: leaf, to_index });
        let mut stream = client.audit().export_entries(request).await?.into_inner();
        let (mut found, mut signed) = (None, None);
        // Bounded: the range holds one entry, then the checkpoint ends the stream.
        while let Some(message) = stream.message().await? {
            match message.item {
                Some(v1::export_entries_response::Item::Entry(entry)) => found = Some(entry),
                Some(v1::export_entries_response::Item::Checkpoint(checkpoint)) => signed = Some(checkpoint),
                _ => {}
            }
        }
        let entry = found.ok_or_else(|| tonic::Status::not_found(format!("no entry {leaf}")))?;
        let checkpoint = signed.ok_or_else(|| tonic::Status::internal("the export carried no checkpoint"))?;
        let verdict = match tio_audit::checkpoint::Checkpoint::open(&checkpoint.signed_note, &console.verifier) {
            Err(err) => Err(format!("the checkpoint does not verify: {err}")),
            Ok(opened) => {
                let request = v1::GetInclusionProofRequest { leaf_index: leaf, tree_size: opened.size };
                let proof = client.audit().get_inclusion_proof(client.request(request)).await?;
                let hashes: Result<Vec<tio_audit::merkle::Hash>, _> =
                    proof.into_inner().hashes.iter().map(|hash| <[u8; 32]>::try_from(hash.as_slice())).collect();
                let leaf_hash = tio_audit::merkle::leaf_hash(&entry.canonical_json);
                match hashes {
                    Err(_) => Err("the proof holds a hash that is not 32 bytes".to_owned()),
                    Ok(hashes) => {
                        tio_audit::merkle::verify_inclusion(&leaf_hash, leaf, opened.size, &hashes, &opened.root)
                            .map(|()| opened.size)
                            .map_err(|err| format!("the entry is not proved in the checkpoint: {err}"))
                    }
                }
            }
        };
        Ok(pages::entry(&entry, verdict, &viewer))
    };
    page_or_error(result.await, &viewer)
}

async fn child_form(State(console): State<Arc<Console>>, Extension(signed_in): Extension<SignedIn>) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    page_or_error(Ok(pages::child(&pages::ChildForm::default(), None, &[], &viewer)), &viewer)
}

async fn child_report(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    Form(form): Form<pages::ChildForm>,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let client = &signed_in.client;
    let result = async {
        let request = form.to_request()?;
        let response = client.audit().subject_access_report(client.request(request)).await?;
        Ok(pages::child(&form, Some(&response.into_inner()), &console.catalogues.languages(), &viewer))
    };
    page_or_error(result.await, &viewer)
}

async fn audit_form(State(console): State<Arc<Console>>, Extension(signed_in): Extension<SignedIn>) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    page_or_error(Ok(pages::audit(&pages::AuditFilter::default(), None, &viewer)), &viewer)
}

async fn audit_results(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    Form(filter): Form<pages::AuditFilter>,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let client = &signed_in.client;
    let result = async {
        let request = filter.to_request()?;
        let response = client.audit().query_entries(client.request(request)).await?.into_inner();
        Ok(pages::audit(&filter, Some(&response), &viewer))
    };
    page_or_error(result.await, &viewer)
}
