//! Reading a request: the target path, query parameters and conditional headers.
//!
//! Strict on purpose: an unknown parameter or a malformed header is a `400 bad_request` naming
//! it, never silently ignored, so a typo in `if-match` cannot turn a compare-and-swap into an
//! unconditional write.

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderMap;
use http::header::{IF_MATCH, IF_NONE_MATCH};

use super::ApiError;
use crate::error::ErrorCode;
use crate::store::{Condition, MAX_LIST_LIMIT};

/// The longest TTL, in seconds: ten years.
pub(crate) const MAX_TTL_S: u64 = 10 * 365 * 24 * 60 * 60;

/// What a path addresses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// One key: `/kv/{key}`.
    Key(&'a str),
    /// The keys under a prefix: `/kv/{prefix}/`, or `/kv/` for all of them.
    List(&'a str),
}

impl<'a> Target<'a> {
    pub(crate) fn of_path(path: &'a str) -> Result<Self, ApiError> {
        let rest = path.strip_prefix("/kv/").ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no such path `{path}`: the key-value API lives under `/kv/`"),
            )
        })?;
        Ok(if rest.is_empty() || rest.ends_with('/') {
            Self::List(rest)
        } else {
            Self::Key(rest)
        })
    }
}

/// The query parameters, percent-decoded, refusing any not in `known` and any given twice.
pub(crate) fn query(
    query: Option<&str>,
    known: &[&'static str],
) -> Result<HashMap<&'static str, String>, ApiError> {
    let mut params = HashMap::new();
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(&name) = known.iter().find(|known| **known == name) else {
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{}` (known here: {known})",
                crate::key::shown(name)
            )));
        };
        let value = percent_decode(value).ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter `{name}` is not valid percent-encoded UTF-8"
            ))
        })?;
        if params.insert(name, value).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter `{name}` is given more than once"
            )));
        }
    }
    Ok(params)
}

/// Decodes `%XX` escapes (a `+` stays a `+`: keys may contain it).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(byte);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn list_limit(text: &str) -> Result<usize, ApiError> {
    text.parse::<usize>()
        .ok()
        .filter(|limit| (1..=MAX_LIST_LIMIT).contains(limit))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`limit` must be a whole number from 1 to {MAX_LIST_LIMIT}, not `{}`",
                crate::key::shown(text)
            ))
        })
}

pub(crate) fn ttl(text: &str) -> Result<Duration, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|seconds| (1..=MAX_TTL_S).contains(seconds))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`ttl_s` must be a whole number of seconds from 1 to {MAX_TTL_S}, not `{}`",
                crate::key::shown(text)
            ))
        })
}

/// `if-match: "N"` (compare-and-swap), `if-none-match: *` (create-only), or neither.
pub(crate) fn put_condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    match (if_match(headers)?, single_header(headers, IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either `if-match` or `if-none-match`, not both",
        )),
        (Some(version), None) => Ok(Condition::IfVersion(version)),
        (None, Some("*")) => Ok(Condition::IfAbsent),
        (None, Some(other)) => Err(ApiError::bad_request(format!(
            "`if-none-match` on a PUT must be `*` (create-only), not `{}`",
            crate::key::shown(other)
        ))),
        (None, None) => Ok(Condition::Any),
    }
}

/// `if-match: "N"`, or nothing.
pub(crate) fn delete_condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    if headers.contains_key(IF_NONE_MATCH) {
        return Err(ApiError::bad_request(
            "`if-none-match` is not supported on DELETE; use `if-match`",
        ));
    }
    Ok(if_match(headers)?.map_or(Condition::Any, Condition::IfVersion))
}

/// The version of an `if-match: "N"` header.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = single_header(headers, IF_MATCH)? else {
        return Ok(None);
    };
    strong_etag(value).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`if-match` must be one version in quotes, as the `etag` header gives it (`\"42\"`), \
             not `{}`",
            crate::key::shown(value)
        ))
    })
}

fn strong_etag(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('"')?.strip_suffix('"')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn single_header(headers: &HeaderMap, name: http::HeaderName) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(&name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "`{name}` is given more than once"
        )));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("`{name}` is not visible ASCII")))?;
    Ok(Some(value.trim()))
}

/// The `if-none-match` of a GET: answer 304 when the stored version is one of these.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GetPrecondition {
    None,
    Any,
    Versions(Vec<u64>),
}

impl GetPrecondition {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = single_header(headers, IF_NONE_MATCH)? else {
            return Ok(Self::None);
        };
        if value == "*" {
            return Ok(Self::Any);
        }
        value
            .split(',')
            .map(|tag| {
                let tag = tag.trim();
                // `if-none-match` compares weakly, so `W/"N"` matches version N too.
                strong_etag(tag.strip_prefix("W/").unwrap_or(tag))
            })
            .collect::<Option<Vec<_>>>()
            .map(Self::Versions)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`if-none-match` must be `*` or versions in quotes (`\"42\"`), not `{}`",
                    crate::key::shown(value)
                ))
            })
    }

    pub(crate) fn matches(&self, version: u64) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::Versions(versions) => versions.contains(&version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn paths_ending_in_a_slash_are_lists() {
        assert_eq!(Target::of_path("/kv/").ok(), Some(Target::List("")));
        assert_eq!(Target::of_path("/kv/a/b/").ok(), Some(Target::List("a/b/")));
        assert_eq!(Target::of_path("/kv/a/b").ok(), Some(Target::Key("a/b")));
        assert!(Target::of_path("/kv").is_err());
        assert!(Target::of_path("/other/a").is_err());
    }

    #[test]
    fn query_values_are_percent_decoded_once() {
        let params = query(Some("after=a%2520b%2Bc+d&limit=5"), &["after", "limit"]).unwrap();
        assert_eq!(params["after"], "a%20b+c+d");
        assert_eq!(params["limit"], "5");
    }

    #[test]
    fn unknown_repeated_or_malformed_parameters_are_refused() {
        assert!(query(Some("ttl=5"), &["ttl_s"]).is_err());
        assert!(query(Some("ttl_s=1&ttl_s=2"), &["ttl_s"]).is_err());
        assert!(query(Some("after=%zz"), &["after"]).is_err());
        assert!(query(Some("after=%ff"), &["after"]).is_err());
        assert!(query(Some("x"), &[]).is_err());
    }

    #[test]
    fn conditions_come_from_if_match_and_if_none_match() {
        assert_eq!(put_condition(&headers(&[])).ok(), Some(Condition::Any));
        assert_eq!(
            put_condition(&headers(&[(IF_MATCH, "\"7\"")])).ok(),
            Some(Condition::IfVersion(7))
        );
        assert_eq!(
            put_condition(&headers(&[(IF_NONE_MATCH, "*")])).ok(),
            Some(Condition::IfAbsent)
        );
        for bad in [
            headers(&[(IF_MATCH, "7")]),
            headers(&[(IF_MATCH, "*")]),
            headers(&[(IF_MATCH, "W/\"7\"")]),
            headers(&[(IF_MATCH, "\"7\", \"8\"")]),
            headers(&[(IF_MATCH, "\"7\""), (IF_MATCH, "\"8\"")]),
            headers(&[(IF_NONE_MATCH, "\"7\"")]),
            headers(&[(IF_MATCH, "\"7\""), (IF_NONE_MATCH, "*")]),
        ] {
            assert!(put_condition(&bad).is_err(), "{bad:?}");
        }
        assert!(delete_condition(&headers(&[(IF_NONE_MATCH, "*")])).is_err());
    }

    #[test]
    fn get_preconditions_compare_weakly() {
        let precondition =
            GetPrecondition::from_headers(&headers(&[(IF_NONE_MATCH, "\"3\", W/\"5\"")])).unwrap();
        assert!(precondition.matches(5) && precondition.matches(3) && !precondition.matches(4));
        assert!(GetPrecondition::from_headers(&headers(&[(IF_NONE_MATCH, "5")])).is_err());
    }

    #[test]
    fn ttls_and_limits_are_bounded() {
        assert_eq!(ttl("1").ok(), Some(Duration::from_secs(1)));
        for bad in ["0", "-1", "1.5", "", "99999999999"] {
            assert!(ttl(bad).is_err(), "{bad}");
        }
        assert_eq!(list_limit("1000").ok(), Some(1000));
        for bad in ["0", "1001", "x"] {
            assert!(list_limit(bad).is_err(), "{bad}");
        }
    }
}
