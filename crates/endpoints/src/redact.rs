//! Keeping backend passwords out of every message, log line and `Debug` output.
//!
//! Two layers: [`redact_url`] for the URLs we print ourselves, and [`Secrets`] to scrub the
//! password from the text of errors that client libraries produce, in case one ever quotes it.

/// What stands in for a removed password.
const MASK: &str = "***";

/// `url` with any password replaced by `***`: the one in `user:password@`, a `password=`
/// query parameter, and a `password=` setting of a PostgreSQL `key=value` connection string.
///
/// ```
/// use septa_endpoints::redact_url;
/// assert_eq!(redact_url("redis://app:s3cret@db:6379/0"), "redis://app:***@db:6379/0");
/// assert_eq!(
///     redact_url("postgres://app@db/shop?password=s3cret&sslmode=disable"),
///     "postgres://app@db/shop?password=***&sslmode=disable",
/// );
/// assert_eq!(redact_url("host=db password='s 3' user=app"), "host=db password=*** user=app");
/// ```
pub fn redact_url(url: &str) -> String {
    let without_userinfo = match userinfo_password(url) {
        Some((start, end)) => format!("{}{MASK}{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    };
    redact_password_settings(&without_userinfo)
}

/// The byte range of the password in `scheme://user:password@host...`, if there is one.
fn userinfo_password(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let userinfo = &authority[..authority.rfind('@')?];
    let colon = userinfo.find(':')?;
    Some((
        authority_start + colon + 1,
        authority_start + userinfo.len(),
    ))
}

/// Masks the value of every `password=` setting, in a query string or a `key=value` string.
fn redact_password_settings(text: &str) -> String {
    const NAME: &str = "password";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(NAME) {
        let name_start = search + found;
        let mut at = name_start + NAME.len();
        search = at;
        let preceded_ok = text[..name_start]
            .chars()
            .next_back()
            .is_none_or(|c| matches!(c, '?' | '&' | ' ' | '\t' | '\n'));
        let after_name = &text[at..];
        let spaces = after_name.len() - after_name.trim_start().len();
        if !preceded_ok || !after_name[spaces..].starts_with('=') {
            continue;
        }
        at += spaces + 1;
        at += text[at..].len() - text[at..].trim_start().len();
        let value_end = value_end(text, at);
        out.push_str(&text[copied..at]);
        out.push_str(MASK);
        copied = value_end;
        search = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Where a setting's value starting at `start` ends: a quoted value at its closing quote,
/// anything else at the next separator.
fn value_end(text: &str, start: usize) -> usize {
    let value = &text[start..];
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return start + 1 + i + 1,
                _ => escaped = false,
            }
        }
        return text.len();
    }
    start
        + value
            .find(['&', '#', ' ', '\t', '\n'])
            .unwrap_or(value.len())
}

/// Passwords to scrub from text that a client library produced.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The secrets of a backend URL: its password as written, and `decoded`, the password as
    /// the client library understood it (percent-decoded, or from a `password=` setting).
    pub(crate) fn of(url: &str, decoded: Option<&str>) -> Self {
        let mut secrets = Vec::new();
        if let Some((start, end)) = userinfo_password(url) {
            secrets.push(url[start..end].to_owned());
        }
        secrets.extend(decoded.map(str::to_owned));
        secrets.retain(|secret| !secret.is_empty());
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self(secrets)
    }

    /// `text` with every secret replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret, MASK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_userinfo_are_masked() {
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379"),
            "redis://:***@127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u:a@b@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "redis://127.0.0.1:6379",
            "postgres://user@host/db",
            "postgres://host/db?user=u&sslmode=disable",
            "host=db user=app",
            "postgres://h/db?passwordless=1",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn password_settings_are_masked() {
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=x%20y#f"),
            "postgres://h/db?user=u&password=***#f"
        );
        assert_eq!(
            redact_url("host=db PASSWORD = hunter2 user=app"),
            "host=db PASSWORD = *** user=app"
        );
        assert_eq!(
            redact_url("password='it\\'s secret' host=db"),
            "password=*** host=db"
        );
    }

    #[test]
    fn scrubbing_removes_both_spellings_of_a_password() {
        let secrets = Secrets::of("redis://u:p%40ss@h", Some("p@ss"));
        assert_eq!(
            secrets.scrub("auth p@ss failed for p%40ss"),
            "auth *** failed for ***"
        );
        assert_eq!(Secrets::of("redis://h", None).scrub("p@ss"), "p@ss");
    }
}
