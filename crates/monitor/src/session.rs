//! Browser sessions on the admin listener: a browser cannot send `Authorization: Bearer` on a
//! navigation or an `EventSource`, so `/login` trades the admin token for a cookie.
//!
//! The cookie never holds the token. It holds when it was issued and an HMAC-SHA256, under a
//! key drawn at random when the process starts, of that time and the token:
//! `v1.ISSUED_UNIX_S.HEX_TAG`. The admin listener recomputes the tag and compares in constant
//! time ([`ring::hmac::verify`]), so a cookie cannot be forged without the key, is worthless to
//! another septa process (or this one after a restart), and expires after [`SESSION_LIFETIME`]
//! whatever the browser does with `Max-Age`.

use std::time::Duration;

use ring::hmac;
use ring::rand::SystemRandom;

use crate::token::AdminToken;

/// The cookie's name.
pub const SESSION_COOKIE: &str = "septa_admin";

/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// What a session's tag is computed over, besides its issue time and the token; keeps the tag
/// apart from any other use of the key.
const CONTEXT: &[u8] = b"septa-admin-session-v1";

/// Issues and checks session cookies for one admin token.
pub(crate) struct Sessions {
    key: hmac::Key,
    token: AdminToken,
}

impl Sessions {
    /// Sessions for `token` under a fresh random key; `None` when the system's random number
    /// generator fails (then no browser can log in, and bearer tokens still work).
    pub(crate) fn new(token: AdminToken) -> Option<Self> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok()?;
        Some(Self { key, token })
    }

    /// A cookie value for a session starting at `now_unix_s`.
    pub(crate) fn issue(&self, now_unix_s: u64) -> String {
        let tag = hmac::sign(&self.key, &self.message(now_unix_s));
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("v1.{now_unix_s}.{hex}")
    }

    /// Whether `value` is a cookie this process issued and that has not expired at `now_unix_s`.
    pub(crate) fn verify(&self, value: &str, now_unix_s: u64) -> bool {
        let Some(("v1", rest)) = value.split_once('.') else {
            return false;
        };
        let Some((issued, hex)) = rest.split_once('.') else {
            return false;
        };
        let (Ok(issued), Some(tag)) = (issued.parse::<u64>(), decode_hex(hex)) else {
            return false;
        };
        let fresh = match now_unix_s.checked_sub(issued) {
            Some(age) => age < SESSION_LIFETIME.as_secs(),
            // Issued "in the future": the clock stepped back since; a minute of that is fine.
            None => issued - now_unix_s < 60,
        };
        fresh && hmac::verify(&self.key, &self.message(issued), &tag).is_ok()
    }

    fn message(&self, issued: u64) -> Vec<u8> {
        let mut message = CONTEXT.to_vec();
        message.push(0);
        message.extend_from_slice(issued.to_string().as_bytes());
        message.push(0);
        message.extend_from_slice(self.token.secret().as_bytes());
        message
    }
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub(crate) fn cookie_value<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(AdminToken::new("correct-horse-battery", "test").unwrap()).unwrap()
    }

    #[test]
    fn a_cookie_verifies_until_it_expires_and_never_holds_the_token() {
        let sessions = sessions();
        let cookie = sessions.issue(1_000);
        assert!(!cookie.contains("correct-horse-battery"));
        assert!(sessions.verify(&cookie, 1_000));
        assert!(sessions.verify(&cookie, 1_000 + SESSION_LIFETIME.as_secs() - 1));
        assert!(!sessions.verify(&cookie, 1_000 + SESSION_LIFETIME.as_secs()));
        assert!(sessions.verify(&cookie, 990), "a little clock skew is fine");
    }

    #[test]
    fn forged_altered_or_foreign_cookies_do_not_verify() {
        let sessions = sessions();
        let cookie = sessions.issue(1_000);
        let later = cookie.replacen("1000", "2000", 1);
        assert!(!sessions.verify(&later, 2_000), "the issue time is signed");
        let mut flipped = cookie.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert!(!sessions.verify(&flipped, 1_000));
        let other = Sessions::new(AdminToken::new("correct-horse-battery", "test").unwrap());
        assert!(
            !other.unwrap().verify(&cookie, 1_000),
            "another process's key"
        );
        for junk in [
            "",
            "v1",
            "v1.1000",
            "v1.x.00",
            "v2.1000.00",
            "v1.1000.zz",
            "v1.1000.0",
        ] {
            assert!(!sessions.verify(junk, 1_000), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let header = "theme=dark; septa_admin=v1.5.ab ; other=x";
        assert_eq!(cookie_value(header, SESSION_COOKIE), Some("v1.5.ab"));
        assert_eq!(cookie_value("septa_admin_x=1", SESSION_COOKIE), None);
        assert_eq!(cookie_value("", SESSION_COOKIE), None);
    }
}
