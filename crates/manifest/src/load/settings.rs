//! `[ceiling]` and `[gateway]`: the operator's changes to the blocked networks and the
//! gateway-wide settings, and the IP network lists they (and routes' `sources`) are written in.

use ipnet::IpNet;
use serde_spanned::Spanned;

use super::Loader;
use super::routes::http_header_name;
use crate::model::*;
use crate::raw::*;

impl Loader {
    pub(super) fn ceiling(&mut self, raw: &RawCeiling) -> CeilingSpec {
        CeilingSpec {
            relax: self.ip_nets(&raw.relax),
            block: self.ip_nets(&raw.block),
        }
    }

    /// Networks written as CIDRs or single addresses.
    pub(super) fn ip_nets(&mut self, list: &[Spanned<String>]) -> Vec<IpNet> {
        list.iter()
            .filter_map(|s| {
                let text = s.get_ref();
                let parsed = text
                    .parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(n) => Some(n.trunc()),
                    Err(_) => {
                        self.error(
                            &s.span(),
                            format!("`{text}` is not an IP network such as `127.0.0.1/32`"),
                        );
                        None
                    }
                }
            })
            .collect()
    }

    pub(super) fn gateway(&mut self, raw: &RawGateway) -> GatewaySpec {
        let mut spec = GatewaySpec {
            trusted_proxies: self.ip_nets(&raw.trusted_proxies),
            ..GatewaySpec::default()
        };
        if let Some(h) = &raw.client_ip_header {
            match http_header_name(h.get_ref()) {
                Some(name) => spec.client_ip_header = name,
                None => self.error(&h.span(), format!("`{}` is not a header name", h.get_ref())),
            }
        }
        let per_client = |(per_second, burst)| RateLimit {
            key: RateLimitKey::Ip,
            per_second,
            burst,
        };
        if let Some(limit) = &raw.rate_limit {
            spec.rate_limit = self
                .rate(&limit.per_second, limit.burst.as_ref())
                .map(per_client);
        }
        if let Some(budget) = &raw.refusal_budget
            && let Some(budget) = self.rate(&budget.per_second, budget.burst.as_ref())
        {
            spec.refusal_budget = per_client(budget);
        }
        if let Some(prefix) = &raw.client_ipv6_prefix {
            match *prefix.get_ref() {
                bits @ 1..=128 => spec.client_ipv6_prefix = bits,
                _ => self.error(
                    &prefix.span(),
                    "`client_ipv6_prefix` must be between 1 and 128 (bits of the address)",
                ),
            }
        }
        spec
    }
}
