//! The size limit of every field of a flow record.
//!
//! Much of a record comes from outside: a client's path and method, a guest's egress target, a
//! trap message. Without limits one request could write megabytes into the flow log, the
//! writer's queue and the admin's recent flows. [`FlowRecord::bound`] cuts a text field longer
//! than its limit at a character boundary, ends it with [`CUT_MARKER`], and names the field with
//! its original length in [`FlowRecord::cut`], so a reader knows the value is not whole.

use crate::record::FlowRecord;

/// What ends a value that was cut: `/api/aaaa…`.
pub const CUT_MARKER: &str = "…";

/// The longest request path kept, in bytes.
pub const MAX_PATH_BYTES: usize = 2048;
/// The longest destination or egress target kept (a URL a guest asked for), in bytes.
pub const MAX_DESTINATION_BYTES: usize = 1024;
/// The longest reason or error kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The longest identity, rule, route, segment, client address or node name kept, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest method, time, trace or policy hash kept, in bytes. Septa writes these itself
/// except the method, which a client chooses.
pub const MAX_SHORT_BYTES: usize = 64;

impl FlowRecord {
    /// Cuts every field longer than its limit, recording each cut in [`FlowRecord::cut`].
    ///
    /// Cheap when nothing is too long: one length comparison per field. A record already bound
    /// stays as it is.
    pub fn bound(&mut self) {
        let cut = &mut self.cut;
        let mut limit = |field: &'static str, value: &mut String, max: usize| {
            if let Some(original) = cut_to(value, max) {
                cut.insert(field.to_owned(), original as u64);
            }
        };
        limit("time", &mut self.time, MAX_SHORT_BYTES);
        limit("src", &mut self.src, MAX_NAME_BYTES);
        limit("dst", &mut self.dst, MAX_DESTINATION_BYTES);
        limit("reason", &mut self.reason, MAX_MESSAGE_BYTES);
        let optional = [
            ("method", &mut self.method, MAX_SHORT_BYTES),
            ("path", &mut self.path, MAX_PATH_BYTES),
            ("target", &mut self.target, MAX_DESTINATION_BYTES),
            ("rule", &mut self.rule, MAX_NAME_BYTES),
            ("error", &mut self.error, MAX_MESSAGE_BYTES),
            ("route", &mut self.route, MAX_NAME_BYTES),
            ("segment", &mut self.segment, MAX_NAME_BYTES),
            ("client", &mut self.client, MAX_NAME_BYTES),
            ("trace", &mut self.trace, MAX_SHORT_BYTES),
            ("policy", &mut self.policy, MAX_SHORT_BYTES),
            ("node", &mut self.node, MAX_NAME_BYTES),
            ("peer", &mut self.peer, MAX_NAME_BYTES),
        ];
        for (field, value, max) in optional {
            if let Some(value) = value {
                limit(field, value, max);
            }
        }
    }

    /// About how many bytes the record holds, its text included: what a buffer of records
    /// counts against its byte budget.
    pub fn approx_bytes(&self) -> usize {
        let optional = [
            &self.method,
            &self.path,
            &self.target,
            &self.rule,
            &self.error,
            &self.route,
            &self.segment,
            &self.client,
            &self.trace,
            &self.policy,
            &self.node,
            &self.peer,
        ];
        let text = self.time.len()
            + self.src.len()
            + self.dst.len()
            + self.reason.len()
            + optional
                .iter()
                .map(|v| v.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + self.cut.keys().map(|k| k.len() + 8).sum::<usize>();
        size_of::<Self>() + text
    }
}

/// Cuts `value` to at most `max` bytes, the marker included; returns its original length when
/// it was cut.
fn cut_to(value: &mut String, max: usize) -> Option<usize> {
    let original = value.len();
    if original <= max {
        return None;
    }
    let mut end = max.saturating_sub(CUT_MARKER.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push_str(CUT_MARKER);
    Some(original)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::record::FlowKind;
    use septa_policy::Verdict;

    fn record() -> FlowRecord {
        FlowRecord::new(
            FlowKind::Ingress,
            "gateway",
            "function:storefront",
            Verdict::Deny,
            "no route matches",
        )
    }

    #[test]
    fn a_long_path_is_cut_with_a_marker_and_its_length() {
        let mut record = record();
        let long = format!("/{}", "a".repeat(70_000));
        record.path = Some(long.clone());
        record.bound();
        let path = record.path.as_deref().unwrap();
        assert_eq!(path.len(), MAX_PATH_BYTES);
        assert!(path.ends_with(CUT_MARKER), "{path}");
        assert!(long.starts_with(path.trim_end_matches(CUT_MARKER)));
        assert_eq!(record.cut.get("path"), Some(&70_001));
        assert_eq!(record.cut.len(), 1);
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""cut":{"path":70001}"#), "{json}");
    }

    #[test]
    fn fields_within_their_limits_are_untouched() {
        let mut record = record();
        record.path = Some("/api/orders".to_owned());
        record.method = Some("GET".to_owned());
        let before = record.clone();
        record.bound();
        assert_eq!(record, before);
        assert!(!serde_json::to_string(&record).unwrap().contains("cut"));
    }

    #[test]
    fn a_cut_never_splits_a_character_and_every_long_field_is_named() {
        let mut record = record();
        record.method = Some("é".repeat(100));
        record.error = Some("x".repeat(MAX_MESSAGE_BYTES + 1));
        record.dst = "d".repeat(MAX_DESTINATION_BYTES * 3);
        record.bound();
        let method = record.method.as_deref().unwrap();
        assert!(method.len() <= MAX_SHORT_BYTES);
        assert!(method.ends_with(CUT_MARKER));
        assert_eq!(record.cut.get("method"), Some(&200));
        assert_eq!(
            record.cut.get("error"),
            Some(&(MAX_MESSAGE_BYTES as u64 + 1))
        );
        assert_eq!(
            record.cut.get("dst"),
            Some(&(MAX_DESTINATION_BYTES as u64 * 3))
        );
        // Bounding again changes nothing: the cut fields are within their limits now.
        let once = record.clone();
        record.bound();
        assert_eq!(record, once);
    }

    #[test]
    fn the_size_estimate_grows_with_the_text() {
        let small = record();
        let mut large = record();
        large.path = Some("p".repeat(1000));
        assert!(large.approx_bytes() >= small.approx_bytes() + 1000);
    }
}
