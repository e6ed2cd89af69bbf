//! Sign-in and sessions. The console holds an auditor's (or admin's) certificate, so a
//! browser must prove it was given the right to use it: the console prints a one-time
//! sign-in link where it was started (its terminal, or its service's journal); the
//! person who opens it gives their name, which the broker then records as the
//! professional on every call they make, and gets a session cookie (HttpOnly,
//! SameSite=Strict, Secure over TLS) that lapses after 15 minutes without a request.
//! Each link works once; the console prints the next one as soon as it is used.
//!
//! Every form a signed-in person posts carries their session's own random token, which
//! `require_session` checks before any handler runs, so another site cannot make the
//! browser post a change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tio_client::Client;

use crate::pages::{self, Viewer};
use crate::{Console, ConsoleError};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "tio_console_session";
/// How long a session lasts without a request.
pub(crate) const IDLE: Duration = Duration::from_secs(15 * 60);
/// At most this many sessions at once: each needs a sign-in link from the console's
/// own terminal, so more would mean something is wrong.
const MAX_SESSIONS: usize = 64;
/// The largest form body the console reads (a pasted checkpoint or an uploaded audit
/// export is the largest it expects).
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024 * 1024;
/// The longest name the broker accepts as a professional's id.
const MAX_NAME_BYTES: usize = 128;

/// A signed-in person: their name (sent to the broker as the professional), their
/// session's form token, and the broker connection that names them.
#[derive(Clone)]
pub(crate) struct SignedIn {
    /// The name they gave at sign-in.
    pub(crate) name: String,
    /// The token every form they post must carry.
    pub(crate) csrf: String,
    /// The console's connection to the broker, naming them as the professional.
    pub(crate) client: Client,
}

struct Session {
    name: String,
    csrf: String,
    last_seen: Instant,
}

struct State_ {
    /// The current sign-in link's token.
    sign_in: String,
    sessions: HashMap<String, Session>,
}

/// Where the console prints each new sign-in link.
pub type Announce = Box<dyn Fn(&str) + Send + Sync>;

/// The sign-in link and the sessions.
pub(crate) struct Sessions {
    state: Mutex<State_>,
    /// The console's own address (`http://127.0.0.1:8080/`).
    base: String,
    announce: Announce,
    /// Whether the console is served over TLS (the cookie is then `Secure`).
    secure: bool,
}

/// 32 random bytes, hex.
fn random_token() -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| ConsoleError::Random(err.to_string()))?;
    Ok(hex::encode(bytes))
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Sessions {
    /// Makes the first sign-in link and announces it.
    pub(crate) fn new(base: String, secure: bool, announce: Announce) -> Result<Sessions, ConsoleError> {
        let sessions = Sessions {
            state: Mutex::new(State_ { sign_in: random_token()?, sessions: HashMap::new() }),
            base,
            announce,
            secure,
        };
        sessions.announce_link(&sessions.lock().sign_in);
        Ok(sessions)
    }

    fn lock(&self) -> MutexGuard<'_, State_> {
        // A panic while holding the lock leaves plain data behind, still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn announce_link(&self, token: &str) {
        (self.announce)(&format!("{}sign-in?token={token}", self.base));
    }

    /// Whether `token` is the current sign-in link's.
    fn link_is_current(&self, token: &str) -> bool {
        same(&self.lock().sign_in, token)
    }

    /// Uses the sign-in link's `token` to start a session for `name`; announces the
    /// next link. `None` if the token is not the current one.
    fn start(&self, token: &str, name: String, now: Instant) -> Result<Option<String>, ConsoleError> {
        let (id, csrf, next) = (random_token()?, random_token()?, random_token()?);
        let mut state = self.lock();
        if !same(&state.sign_in, token) {
            return Ok(None);
        }
        state.sign_in = next.clone();
        state.sessions.retain(|_, session| now.duration_since(session.last_seen) < IDLE);
        if state.sessions.len() >= MAX_SESSIONS {
            // The one idle longest makes room.
            let oldest = state.sessions.iter().min_by_key(|(_, session)| session.last_seen).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                state.sessions.remove(&oldest);
            }
        }
        state.sessions.insert(id.clone(), Session { name, csrf, last_seen: now });
        drop(state);
        self.announce_link(&next);
        Ok(Some(id))
    }

    /// The name and form token of session `id`, if it has not lapsed at `now`; counts
    /// this as activity.
    fn find(&self, id: &str, now: Instant) -> Option<(String, String)> {
        let mut state = self.lock();
        let session = state.sessions.get_mut(id)?;
        if now.duration_since(session.last_seen) >= IDLE {
            state.sessions.remove(id);
            return None;
        }
        session.last_seen = now;
        Some((session.name.clone(), session.csrf.clone()))
    }

    fn end(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    /// The cookie that carries session `id` (or, empty, ends it).
    fn cookie(&self, id: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let expire = if id.is_empty() { "; Max-Age=0" } else { "" };
        let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}{expire}");
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }
}

/// The session id in the request's cookies, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Lets a request through only with a live session (except the sign-in page and the
/// static assets it needs), and a posted form only with that session's token; hands
/// the handlers the person signed in.
pub(crate) async fn require_session(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/sign-in" || path.starts_with("/assets/") {
        return next.run(request).await;
    }
    let found = session_id(request.headers()).and_then(|id| console.sessions.find(&id, Instant::now()));
    // The name was checked at sign-in, so the connection naming it can be made.
    let found = found.and_then(|(name, csrf)| {
        let client = console.client.with_professional(&name).ok()?;
        Some(SignedIn { name, csrf, client })
    });
    let Some(signed_in) = found else {
        let page = pages::message(
            "Sign in first",
            "Open the sign-in link the console printed where it was started. Each link works once; the console prints a new one when it is used. A session ends after 15 minutes without use.",
            &Viewer::signed_out(console.pinned),
        );
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    };
    let mut request = if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than the console accepts").into_response();
        };
        let csrf = form_token(&parts.headers, &bytes);
        if !csrf.is_some_and(|csrf| same(&csrf, &signed_in.csrf)) {
            let page = pages::message(
                "This form was not made for you",
                "The console did not make this form for your session (it may be from another site, or from a session that has ended). Open the page again and send it from there.",
                &Viewer::of(&signed_in, console.pinned),
            );
            return (StatusCode::FORBIDDEN, Html(page.into_string())).into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    request.extensions_mut().insert(signed_in);
    next.run(request).await
}

/// The form token of a posted body: the `csrf` field of a URL-encoded form, or the
/// first part of a multipart one (the console's upload form puts it first).
fn form_token(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") {
        return multipart_first_field(body, boundary.trim_matches('"'), "csrf");
    }
    form_urlencoded::parse(body).find(|(name, _)| name == "csrf").map(|(_, value)| value.into_owned())
}

/// The value of a multipart body's first part, if it is the field `name`.
fn multipart_first_field(body: &[u8], boundary: &str, name: &str) -> Option<String> {
    let rest = body.strip_prefix(format!("--{boundary}\r\n").as_bytes())?;
    let closing = format!("\r\n--{boundary}");
    let end = rest.windows(closing.len()).position(|window| window == closing.as_bytes())?;
    let (head, value) = std::str::from_utf8(&rest[..end]).ok()?.split_once("\r\n\r\n")?;
    head.to_ascii_lowercase().contains(&format!("name=\"{name}\"")).then(|| value.to_owned())
}

/// The sign-in link's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// The sign-in form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
}

fn link_used(console: &Console) -> Response {
    let page = pages::message(
        "This sign-in link does not work",
        "Each sign-in link works once. Use the newest link the console printed where it was started.",
        &Viewer::signed_out(console.pinned),
    );
    (StatusCode::FORBIDDEN, Html(page.into_string())).into_response()
}

/// The sign-in page: asks the person's name.
pub(crate) async fn sign_in_form(State(console): State<Arc<Console>>, Query(query): Query<LinkQuery>) -> Response {
    if !console.sessions.link_is_current(&query.token) {
        return link_used(&console);
    }
    Html(sign_in_page(&query.token, "", None, console.pinned).into_string()).into_response()
}

fn sign_in_page(token: &str, name: &str, error: Option<&str>, pinned: bool) -> maud::Markup {
    let content = html! {
        form method="post" action="/sign-in" novalidate {
            input type="hidden" name="token" value=(token);
            div class={ "nhsuk-form-group" @if error.is_some() { " nhsuk-form-group--error" } } {
                label class="nhsuk-label" for="name" { "Your name or staff id" }
                div class="nhsuk-hint" id="name-hint" {
                    "The broker records it beside every record you look at, as the person who looked. One word as your organisation knows you, such as sarah.evans: letters A to Z, digits and punctuation, no spaces."
                }
                @if let Some(error) = error {
                    span class="nhsuk-error-message" id="name-error" {
                        span class="nhsuk-u-visually-hidden" { "Error: " } (error)
                    }
                }
                input class="nhsuk-input nhsuk-input--width-20" id="name" name="name" type="text" autocomplete="name"
                    aria-describedby="name-hint" value=(name);
            }
            button class="nhsuk-button" type="submit" id="sign-in" { "Sign in" }
        }
    };
    pages::layout("Sign in", &Viewer::signed_out(pinned), content)
}

/// Checks a name as the broker takes a professional's id: 1 to 128 printable ASCII
/// characters, no spaces.
fn checked_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Enter your name or staff id");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("Your name or staff id must be 128 characters or fewer");
    }
    if !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(
            "Your name or staff id must be one word of letters A to Z, digits and punctuation (no spaces or accents)",
        );
    }
    Ok(name)
}

/// Signs in: uses the link's token, starts a session, sets its cookie.
pub(crate) async fn sign_in(State(console): State<Arc<Console>>, Form(form): Form<SignInForm>) -> Response {
    if !console.sessions.link_is_current(&form.token) {
        return link_used(&console);
    }
    let name = match checked_name(&form.name) {
        Ok(name) => name.to_owned(),
        Err(error) => {
            let page = sign_in_page(&form.token, &form.name, Some(error), console.pinned);
            return (StatusCode::BAD_REQUEST, Html(page.into_string())).into_response();
        }
    };
    if let Err(err) = console.client.with_professional(&name) {
        let page = sign_in_page(&form.token, &form.name, Some(&err.to_string()), console.pinned);
        return (StatusCode::BAD_REQUEST, Html(page.into_string())).into_response();
    }
    match console.sessions.start(&form.token, name, Instant::now()) {
        Ok(Some(id)) => {
            tracing::info!("a console session started");
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().insert(header::SET_COOKIE, console.sessions.cookie(&id));
            response
        }
        Ok(None) => link_used(&console),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// Signs out: ends the session and its cookie.
pub(crate) async fn sign_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        console.sessions.end(&id);
    }
    let page = pages::message(
        "Signed out",
        "Your session has ended. To sign in again, use the newest link the console printed.",
        &Viewer::signed_out(console.pinned),
    );
    let mut response = Html(page.into_string()).into_response();
    response.headers_mut().insert(header::SET_COOKIE, console.sessions.cookie(""));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> (Sessions, Arc<Mutex<Vec<String>>>) {
        let links = Arc::new(Mutex::new(Vec::new()));
        let seen = links.clone();
        let announce: Announce = Box::new(move |link| seen.lock().unwrap().push(link.to_owned()));
        (Sessions::new("http://127.0.0.1:8080/".into(), false, announce).unwrap(), links)
    }

    fn token_of(link: &str) -> String {
        link.split_once("token=").unwrap().1.to_owned()
    }

    #[test]
    fn each_link_works_once_and_the_next_is_announced() {
        let (sessions, links) = sessions();
        let now = Instant::now();
        let first = token_of(&links.lock().unwrap()[0]);
        assert_eq!(first.len(), 64);
        assert!(sessions.link_is_current(&first));
        assert!(!sessions.link_is_current("") && !sessions.link_is_current(&first[..63]));
        assert_eq!(sessions.start("forged", "Sam".into(), now).unwrap(), None);
        let id = sessions.start(&first, "Sam".into(), now).unwrap().unwrap();
        assert_eq!(sessions.start(&first, "Eve".into(), now).unwrap(), None, "a used link is dead");
        assert!(!sessions.link_is_current(&first));
        let second = token_of(&links.lock().unwrap()[1]);
        assert!(sessions.link_is_current(&second), "the next link is announced");
        let (name, csrf) = sessions.find(&id, now).unwrap();
        assert_eq!(name, "Sam");
        assert_eq!(csrf.len(), 64);
        assert_ne!(csrf, id);
        assert!(sessions.find("not-a-session", now).is_none());
        sessions.end(&id);
        assert!(sessions.find(&id, now).is_none(), "signed out");
    }

    #[test]
    fn sessions_lapse_after_fifteen_idle_minutes_and_activity_keeps_them() {
        let (sessions, links) = sessions();
        let start = Instant::now();
        let token = token_of(&links.lock().unwrap()[0]);
        let id = sessions.start(&token, "Sam".into(), start).unwrap().unwrap();
        let minutes = |n: u64| start + Duration::from_secs(60 * n);
        assert!(sessions.find(&id, minutes(14)).is_some());
        assert!(sessions.find(&id, minutes(28)).is_some(), "14 idle minutes since the last request");
        assert!(sessions.find(&id, minutes(43)).is_none(), "15 idle minutes");
        assert!(sessions.find(&id, minutes(44)).is_none(), "and gone for good");
    }

    #[test]
    fn sessions_are_bounded() {
        let (sessions, links) = sessions();
        let now = Instant::now();
        let mut ids = Vec::new();
        for n in 0..=MAX_SESSIONS {
            let token = token_of(&links.lock().unwrap()[n]);
            ids.push(sessions.start(&token, format!("p{n}"), now + Duration::from_millis(n as u64)).unwrap().unwrap());
        }
        let later = now + Duration::from_secs(1);
        assert!(sessions.find(&ids[0], later).is_none(), "the one idle longest made room");
        assert!(ids[1..].iter().all(|id| sessions.find(id, later).is_some()));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let (sessions, _) = sessions();
        let cookie = sessions.cookie("abc");
        assert_eq!(cookie.to_str().unwrap(), "tio_console_session=abc; HttpOnly; SameSite=Strict; Path=/");
        let secure = Sessions::new("https://x/".into(), true, Box::new(|_| {})).unwrap();
        assert!(secure.cookie("abc").to_str().unwrap().ends_with("; Secure"));
        assert!(sessions.cookie("").to_str().unwrap().ends_with("; Max-Age=0"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; tio_console_session=xyz; b=2"));
        assert_eq!(session_id(&headers).as_deref(), Some("xyz"));
        assert_eq!(session_id(&HeaderMap::new()), None);
    }

    #[test]
    fn names_are_checked_as_the_broker_takes_them() {
        assert_eq!(checked_name("  dr.sarah.evans "), Ok("dr.sarah.evans"));
        assert!(checked_name("").is_err());
        assert!(checked_name("Sarah Evans").is_err(), "the broker takes no spaces");
        assert!(checked_name("Siân").is_err());
        assert!(checked_name(&"a".repeat(129)).is_err());
        assert!(checked_name("a\tb").is_err());
    }

    #[test]
    fn the_form_token_is_read_from_either_kind_of_form() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert_eq!(form_token(&headers, b"a=1&csrf=t%20ok&b=2").as_deref(), Some("t ok"));
        assert_eq!(form_token(&headers, b"a=1"), None);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=XyZ"));
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n--XyZ\r\nContent-Disposition: form-data; name=\"export\"; filename=\"a\"\r\n\r\n\xff\xfe\r\n--XyZ--\r\n";
        assert_eq!(form_token(&headers, body).as_deref(), Some("tok"));
        let other = b"--XyZ\r\nContent-Disposition: form-data; name=\"export\"\r\n\r\ntok\r\n--XyZ--\r\n";
        assert_eq!(form_token(&headers, other), None);
    }
}
