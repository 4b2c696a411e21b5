//! Who is signed in to the console, and the rules a request must pass: pure functions, no I/O.
//!
//! Sessions are stateless: the cookie holds the role, the expiry and a random nonce, signed
//! with HMAC-SHA256 under a key derived from the configured tokens (`internal.token`,
//! `internal.read_token`). Every instance configured with the same tokens accepts the same
//! cookie, so behind a load balancer an operator stays signed in whichever instance answers;
//! changing either token signs everyone out everywhere. A signed-out cookie is refused by the
//! instance that signed it out (see `Console::revoke`); a copy of it taken before would still be
//! accepted by another instance until it expires, at most [`SESSION_HOURS`] after sign-in.
//!
//! The per-session forgery token is an HMAC of the session's nonce: a page of another site can
//! neither read it (the cookie is HttpOnly, the page is not readable cross-origin) nor compute
//! it.

use aws_lc_rs::hmac;

/// A session lasts this long from sign-in (the contract: within 12 h).
pub const SESSION_HOURS: i64 = 8;

/// The session cookie's name.
pub const COOKIE: &str = "mppc_console";

/// What a signed-in person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Signed in with `internal.token`: sees everything, requeues and nudges.
    Operator,
    /// Signed in with `internal.read_token`: sees everything, changes nothing.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::ReadOnly => "read-only",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "operator" => Some(Self::Operator),
            "read-only" => Some(Self::ReadOnly),
            _ => None,
        }
    }

    pub fn can_act(self) -> bool {
        self == Self::Operator
    }

    /// Who an audit event says acted.
    pub fn actor(self) -> &'static str {
        match self {
            Self::Operator => "console:operator",
            Self::ReadOnly => "console:read-only",
        }
    }
}

/// One signed-in session, as its cookie carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub role: Role,
    /// Unix seconds after which the cookie is refused.
    pub expires_at: i64,
    pub nonce: [u8; 16],
}

impl Session {
    /// A new session for `role`, signed in at `now` (unix seconds), with a random nonce.
    pub fn begin(role: Role, now: i64) -> Self {
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random source works");
        Self {
            role,
            expires_at: now + SESSION_HOURS * 3600,
            nonce,
        }
    }
}

/// Signs and checks session cookies and forgery tokens.
pub struct SessionKey(hmac::Key);

impl SessionKey {
    /// The key for a deployment configured with these tokens (the same on every instance).
    pub fn derive(operator: Option<&str>, read_only: Option<&str>) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, b"mpp-cancel console session key v1");
        let mut ctx = hmac::Context::with_key(&root);
        for token in [operator, read_only] {
            let token = token.unwrap_or("");
            ctx.update(&(token.len() as u64).to_be_bytes());
            ctx.update(token.as_bytes());
        }
        Self(hmac::Key::new(hmac::HMAC_SHA256, ctx.sign().as_ref()))
    }

    /// The cookie value of `session`: `payload.signature`, both base64url.
    pub fn seal(&self, session: &Session) -> String {
        let payload = format!(
            "1|{}|{}|{}",
            session.role.as_str(),
            session.expires_at,
            hex(&session.nonce)
        );
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!("{}.{}", b64(payload.as_bytes()), b64(tag.as_ref()))
    }

    /// The session a cookie value holds, if this key signed it and it has not expired at `now`.
    pub fn open(&self, cookie: &str, now: i64) -> Option<Session> {
        if cookie.len() > 512 {
            return None;
        }
        let (payload, tag) = cookie.split_once('.')?;
        let payload = unb64(payload)?;
        hmac::verify(&self.0, &payload, &unb64(tag)?).ok()?;
        let text = String::from_utf8(payload).ok()?;
        let mut parts = text.split('|');
        if parts.next()? != "1" {
            return None;
        }
        let role = Role::parse(parts.next()?)?;
        let expires_at: i64 = parts.next()?.parse().ok()?;
        let nonce = unhex16(parts.next()?)?;
        if parts.next().is_some() || now >= expires_at {
            return None;
        }
        Some(Session {
            role,
            expires_at,
            nonce,
        })
    }

    /// The forgery token every form of `session` carries.
    pub fn csrf_token(&self, session: &Session) -> String {
        let mut input = b"csrf|".to_vec();
        input.extend_from_slice(&session.nonce);
        b64(hmac::sign(&self.0, &input).as_ref())
    }

    /// Whether `presented` is `session`'s forgery token (constant time).
    pub fn csrf_matches(&self, session: &Session, presented: &str) -> bool {
        constant_time_eq(self.csrf_token(session).as_bytes(), presented.as_bytes())
    }
}

/// The role a presented token signs in as, compared in constant time with both tokens (an
/// unset or empty one matches nothing).
pub fn role_for(presented: &str, operator: Option<&str>, read_only: Option<&str>) -> Option<Role> {
    let matches = |configured: Option<&str>| {
        configured
            .is_some_and(|t| !t.is_empty() && constant_time_eq(presented.as_bytes(), t.as_bytes()))
    };
    // Both comparisons always run: the time taken does not say which token was near.
    let (is_operator, is_read_only) = (matches(operator), matches(read_only));
    if is_operator {
        Some(Role::Operator)
    } else if is_read_only {
        Some(Role::ReadOnly)
    } else {
        None
    }
}

/// Whether a state-changing request comes from the console's own pages: its `Origin` names the
/// host it was sent to, or, without an `Origin`, the browser says `Sec-Fetch-Site: same-origin`.
/// Neither header (or `Origin: null`): refused, since every browser sends one of them on a
/// form post.
pub fn same_origin(origin: Option<&str>, sec_fetch_site: Option<&str>, host: &str) -> bool {
    match origin {
        Some(origin) => {
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            authority.is_some_and(|a| !host.is_empty() && a.eq_ignore_ascii_case(host))
        }
        None => sec_fetch_site == Some("same-origin"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATOR: &str = "operator-token-0123456789abcdef0123";
    const READER: &str = "read-only-token-0123456789abcdef012";

    fn key() -> SessionKey {
        SessionKey::derive(Some(OPERATOR), Some(READER))
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires() {
        let session = Session::begin(Role::ReadOnly, 1_000);
        let cookie = key().seal(&session);
        assert_eq!(key().open(&cookie, 1_001), Some(session));
        assert!(session.expires_at - 1_000 <= 12 * 3600);
        assert_eq!(key().open(&cookie, session.expires_at), None, "expired");
    }

    #[test]
    fn a_tampered_or_foreign_cookie_is_refused() {
        let session = Session::begin(Role::ReadOnly, 1_000);
        let cookie = key().seal(&session);
        let (_, tag) = cookie.split_once('.').unwrap();
        let forged_payload = format!("1|operator|{}|{}", session.expires_at, hex(&session.nonce));
        let forged = format!("{}.{tag}", b64(forged_payload.as_bytes()));
        assert_eq!(key().open(&forged, 1_001), None, "role changed");
        let other = SessionKey::derive(Some("another-operator-token-0123456789ab"), Some(READER));
        assert_eq!(other.open(&cookie, 1_001), None, "another deployment's key");
        for junk in ["", ".", "abc", "a.b", &"x".repeat(600)] {
            assert_eq!(key().open(junk, 1_001), None, "{junk:?}");
        }
    }

    #[test]
    fn the_forgery_token_is_per_session() {
        let (a, b) = (
            Session::begin(Role::Operator, 0),
            Session::begin(Role::Operator, 0),
        );
        let token = key().csrf_token(&a);
        assert!(key().csrf_matches(&a, &token));
        assert!(!key().csrf_matches(&b, &token));
        assert!(!key().csrf_matches(&a, ""));
    }

    #[test]
    fn tokens_sign_in_as_their_role_and_nothing_else_does() {
        let role = |t| role_for(t, Some(OPERATOR), Some(READER));
        assert_eq!(role(OPERATOR), Some(Role::Operator));
        assert_eq!(role(READER), Some(Role::ReadOnly));
        assert_eq!(role(""), None);
        assert_eq!(role(&OPERATOR[..31]), None);
        assert_eq!(
            role_for("", None, Some("")),
            None,
            "unset tokens match nothing"
        );
        assert!(Role::Operator.can_act() && !Role::ReadOnly.can_act());
    }

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let host = "127.0.0.1:8081";
        assert!(same_origin(Some("http://127.0.0.1:8081"), None, host));
        assert!(same_origin(
            Some("https://127.0.0.1:8081"),
            Some("cross-site"),
            host
        ));
        assert!(!same_origin(Some("http://127.0.0.1:9999"), None, host));
        assert!(!same_origin(
            Some("http://evil.example"),
            Some("same-origin"),
            host
        ));
        assert!(!same_origin(Some("null"), None, host));
        assert!(same_origin(None, Some("same-origin"), host));
        assert!(!same_origin(None, Some("cross-site"), host));
        assert!(!same_origin(None, None, host));
    }
}
