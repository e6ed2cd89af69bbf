//! Page sizes and page tokens, the same for every paged call.
//!
//! A page token is the offset of the next item together with a keyed tag over the
//! offset, the call and the query it continues, so that a token the broker did not
//! issue (garbage, an edited offset, a token from another query or another call) is
//! refused with INVALID_ARGUMENT rather than read as the first page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tio_core::FieldViolation;
use tio_store::Store;

use crate::app::error::ServiceError;

/// The page size when a request leaves it at 0 (`common.proto`).
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;

/// The largest page size a request may ask for (`common.proto`).
pub(crate) const MAX_PAGE_SIZE: usize = 500;

/// Bytes of the tag kept in a token: enough that guessing one is hopeless.
const TAG_BYTES: usize = 16;

/// Returns the page size a request asks for: 1 to [`MAX_PAGE_SIZE`], 0 meaning
/// [`DEFAULT_PAGE_SIZE`].
pub(crate) fn page_size(field: &str, requested: u32) -> Result<usize, ServiceError> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) if size <= MAX_PAGE_SIZE => Ok(size),
        _ => {
            Err(invalid(field, format!("must be 1 to {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {requested}")))
        }
    }
}

/// A page of a list that is read whole, its request checked before the list is read.
pub(crate) struct WholeListPage<'a> {
    store: &'a Store,
    scope: &'a [u8],
    start: u64,
    size: usize,
}

impl<'a> WholeListPage<'a> {
    /// Checks a request's `page.page_size` and `page.page_token` for the query `scope`.
    pub(crate) fn open(
        store: &'a Store,
        scope: &'a [u8],
        page_size: u32,
        page_token: &str,
    ) -> Result<Self, ServiceError> {
        let size = self::page_size("page.page_size", page_size)?;
        let start = open_token(store, "page.page_token", scope, page_token)?;
        Ok(WholeListPage { store, scope, start, size })
    }

    /// Returns which items of the list, `len` long, the page holds, and the token for
    /// the next page (empty after the last).
    pub(crate) fn of(&self, len: usize) -> (std::ops::Range<usize>, String) {
        let start = usize::try_from(self.start).unwrap_or(usize::MAX).min(len);
        let end = start.saturating_add(self.size).min(len);
        let next = if end < len { issue_token(self.store, self.scope, end as u64) } else { String::new() };
        (start..end, next)
    }
}

/// Returns the token for the page that starts at `offset` of the query `scope` (the
/// call's name and the request without its page, so a token continues only the query
/// it came from).
pub(crate) fn issue_token(store: &Store, scope: &[u8], offset: u64) -> String {
    let mut token = offset.to_be_bytes().to_vec();
    token.extend_from_slice(&tag(store, scope, offset)[..TAG_BYTES]);
    URL_SAFE_NO_PAD.encode(token)
}

/// Returns the offset a page token names: 0 for an empty token, an error naming
/// `field` for one this broker did not issue for this query.
pub(crate) fn open_token(store: &Store, field: &str, scope: &[u8], token: &str) -> Result<u64, ServiceError> {
    if token.is_empty() {
        return Ok(0);
    }
    let refused = || invalid(field, "is not a token this call returned for this query");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused())?;
    if bytes.len() != 8 + TAG_BYTES {
        return Err(refused());
    }
    let (offset_bytes, tag_bytes) = bytes.split_at(8);
    let offset = u64::from_be_bytes(offset_bytes.try_into().map_err(|_| refused())?);
    let expected = tag(store, scope, offset);
    // Constant time is not needed to keep a secret here (the tag only vouches for an
    // offset the caller could ask for anyway), so a plain comparison serves.
    if expected[..TAG_BYTES] != *tag_bytes {
        return Err(refused());
    }
    Ok(offset)
}

fn tag(store: &Store, scope: &[u8], offset: u64) -> [u8; 32] {
    let mut payload = scope.to_vec();
    payload.push(0);
    payload.extend_from_slice(&offset.to_be_bytes());
    store.token_tag(&payload)
}

fn invalid(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

/// Returns what a page token of `method` for `request` (its page cleared) is bound to:
/// the method, the caller and the query, so a token continues only its own query.
pub(crate) fn page_scope(method: &str, call: &crate::app::broker::Call, request: impl prost::Message) -> Vec<u8> {
    let mut scope = method.as_bytes().to_vec();
    scope.push(0);
    scope.extend_from_slice(call.caller.certificate_fingerprint.as_bytes());
    scope.push(0);
    scope.extend_from_slice(&request.encode_to_vec());
    scope
}

#[cfg(test)]
mod tests {
    use tio_store::keys::KeyRing;

    use super::*;

    fn store() -> Store {
        Store::in_memory(KeyRing::generate().unwrap()).unwrap()
    }

    fn refused(result: Result<u64, ServiceError>) -> bool {
        matches!(result, Err(ServiceError::InvalidArgument(v)) if v[0].field == "page.page_token")
    }

    #[test]
    fn page_sizes_keep_to_the_contract() {
        assert_eq!(page_size("page.page_size", 0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size("page.page_size", 1).unwrap(), 1);
        assert_eq!(page_size("page.page_size", 500).unwrap(), 500);
        assert!(matches!(page_size("page.page_size", 501),
            Err(ServiceError::InvalidArgument(v)) if v[0].field == "page.page_size"));
        assert!(page_size("page.page_size", u32::MAX).is_err());
    }

    #[test]
    fn only_tokens_issued_for_the_same_query_open() {
        let store = store();
        let token = issue_token(&store, b"consents/a", 300);
        assert_eq!(open_token(&store, "page.page_token", b"consents/a", &token).unwrap(), 300);
        assert_eq!(open_token(&store, "page.page_token", b"consents/a", "").unwrap(), 0);
        // Another query, garbage, a number, an edited offset, another broker's key.
        assert!(refused(open_token(&store, "page.page_token", b"consents/b", &token)));
        for garbage in ["garbage", "300", "!!!", &token[1..]] {
            assert!(refused(open_token(&store, "page.page_token", b"consents/a", garbage)), "{garbage}");
        }
        let mut edited = URL_SAFE_NO_PAD.decode(&token).unwrap();
        edited[7] ^= 1;
        assert!(refused(open_token(&store, "page.page_token", b"consents/a", &URL_SAFE_NO_PAD.encode(edited))));
        assert!(refused(open_token(&self::store(), "page.page_token", b"consents/a", &token)));
    }
}
