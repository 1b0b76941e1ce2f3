//! Segments with their subnets, security groups, and the `SEGMENT/SUBNET` placement of a function
//! or endpoint, checked against each other.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::Loader;
use crate::diagnostic::did_you_mean;
use crate::model::*;
use crate::raw::*;

impl Loader {
    pub(super) fn segments(
        &mut self,
        raw: &[(Spanned<String>, RawSegment)],
    ) -> BTreeMap<Name, Segment> {
        let mut out = BTreeMap::new();
        for (name, seg) in raw {
            let Some(segment_name) = self.name(name) else {
                continue;
            };
            if seg.subnets.is_empty() {
                self.error(&name.span(), format!("segment `{segment_name}` has no subnets; add `subnets = {{ NAME = \"public\" | \"private\" | \"isolated\" }}`"));
            }
            let mut subnets = BTreeMap::new();
            for (subnet, kind) in &seg.subnets {
                match Name::new(subnet) {
                    Ok(n) => {
                        subnets.insert(n, *kind.get_ref());
                    }
                    Err(e) => self.error(
                        &kind.span(),
                        format!("subnet of segment `{segment_name}`: {e}"),
                    ),
                }
            }
            let labels = self.names(&seg.labels);
            let max_concurrency = match &seg.limits.max_concurrency {
                None => None,
                Some(n) => self.within(n, "limits.max_concurrency", 1..=Limits::MAX_CONCURRENCY),
            };
            let cpu_share = self
                .bounded(
                    seg.limits.cpu_share.as_ref(),
                    "limits.cpu_share",
                    1..=Segment::MAX_CPU_SHARE,
                    Segment::DEFAULT_CPU_SHARE,
                )
                .unwrap_or(Segment::DEFAULT_CPU_SHARE);
            out.insert(
                segment_name.clone(),
                Segment {
                    name: segment_name,
                    subnets,
                    labels,
                    mode: seg.mode.unwrap_or_default(),
                    max_concurrency,
                    cpu_share,
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    pub(super) fn groups(&mut self, raw: &[(Spanned<String>, RawGroup)]) -> BTreeMap<Name, Group> {
        let mut out = BTreeMap::new();
        for (name, group) in raw {
            let Some(n) = self.name(name) else { continue };
            out.insert(
                n.clone(),
                Group {
                    name: n,
                    description: group.description.clone(),
                    location: self.loc(&name.span()),
                },
            );
        }
        out
    }

    /// Reports each of `names` that no `[group.NAME]` declares.
    pub(super) fn known_groups(
        &mut self,
        names: &[Spanned<String>],
        groups: &BTreeMap<Name, Group>,
    ) {
        for g in names {
            if !groups.contains_key(g.get_ref().as_str()) {
                let hint = did_you_mean(g.get_ref(), groups.keys().map(Name::as_str));
                self.unknown(&g.span(), "group", g.get_ref(), hint, "[group.NAME]");
            }
        }
    }

    /// `SEGMENT/SUBNET`: the placement, with its subnet's tier and its segment's mode.
    pub(super) fn placement(
        &mut self,
        raw: &Spanned<String>,
        segments: &BTreeMap<Name, Segment>,
    ) -> Option<(Placement, SubnetKind, Mode)> {
        let text = raw.get_ref();
        let Some((seg, sub)) = text.split_once('/') else {
            self.error(
                &raw.span(),
                format!("placement `{text}` must be `SEGMENT/SUBNET`"),
            );
            return None;
        };
        let Some(segment) = segments.get(seg) else {
            let hint = did_you_mean(seg, segments.keys().map(Name::as_str));
            self.unknown(&raw.span(), "segment", seg, hint, "[segment.NAME]");
            return None;
        };
        let Some((subnet, kind)) = segment.subnets.get_key_value(sub) else {
            let hint = did_you_mean(sub, segment.subnets.keys().map(Name::as_str));
            self.unknown(
                &raw.span(),
                &format!("subnet of segment `{seg}`"),
                sub,
                hint,
                "subnets = { NAME = \"private\" }",
            );
            return None;
        };
        Some((
            Placement {
                segment: segment.name.clone(),
                subnet: subnet.clone(),
            },
            *kind,
            segment.mode,
        ))
    }
}
