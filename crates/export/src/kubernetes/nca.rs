//! Reading network-config-analyzer's connectivity map (`nca --connectivity -o
//! txt_no_fw_rules`): one line per pair of workloads, `NS/NAME[Kind] => NS/NAME[Kind] : CONN`,
//! where CONN is `All connections` or `{key:value,...}` groups with the protocols, ports,
//! methods, paths and hosts the pair may use.

/// One side of a connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Peer {
    /// A workload, by namespace and name.
    Workload(String, String),
    /// Anything else: an address range, a host.
    Other(String),
}

impl Peer {
    /// Whether it is the cluster's DNS resolver (network-config-analyzer adds one, named
    /// `kube-dns-livesim`, when policies name it).
    pub(crate) fn is_resolver(&self) -> bool {
        matches!(self, Self::Workload(ns, name) if ns == "kube-system" && name.starts_with("kube-dns"))
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Workload(ns, name) => write!(f, "{ns}/{name}"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// A set of values a connection admits: all, these, all but these, or (for paths) a set
/// expression over patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Values {
    All,
    Only(Vec<String>),
    AllBut(Vec<String>),
    Expr(Expr, Vec<String>),
}

/// A set expression over path patterns, as the analyzer prints unions of rules:
/// `((A|B)&(C|D))-(E)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expr {
    Atom(String),
    Union(Box<Expr>, Box<Expr>),
    Intersection(Box<Expr>, Box<Expr>),
    Difference(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn admits(&self, value: &str, matches: &impl Fn(&str, &str) -> bool) -> bool {
        match self {
            Self::Atom(a) => matches(a, value),
            Self::Union(a, b) => a.admits(value, matches) || b.admits(value, matches),
            Self::Intersection(a, b) => a.admits(value, matches) && b.admits(value, matches),
            Self::Difference(a, b) => a.admits(value, matches) && !b.admits(value, matches),
        }
    }

    fn atoms(&self, out: &mut Vec<String>) {
        match self {
            Self::Atom(a) => {
                if !out.contains(a) {
                    out.push(a.clone());
                }
            }
            Self::Union(a, b) | Self::Intersection(a, b) | Self::Difference(a, b) => {
                a.atoms(out);
                b.atoms(out);
            }
        }
    }

    /// Parses `text`; operators are `|`, `&`, `,` and a `-` right after `)`, all of one
    /// precedence, left to right (the analyzer parenthesizes).
    fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        let expr = Self::sequence(&chars, &mut at)?;
        if at != chars.len() {
            return Err(format!("unexpected `{}` in path set `{text}`", chars[at]));
        }
        Ok(expr)
    }

    fn sequence(chars: &[char], at: &mut usize) -> Result<Self, String> {
        let mut left = Self::term(chars, at)?;
        while let Some(&op) = chars.get(*at) {
            let make: fn(Box<Expr>, Box<Expr>) -> Expr = match op {
                '|' | ',' => Self::Union,
                '&' => Self::Intersection,
                '-' => Self::Difference,
                _ => break,
            };
            *at += 1;
            while chars.get(*at) == Some(&' ') {
                *at += 1;
            }
            let right = Self::term(chars, at)?;
            left = make(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(chars: &[char], at: &mut usize) -> Result<Self, String> {
        if chars.get(*at) == Some(&'(') {
            *at += 1;
            let inner = Self::sequence(chars, at)?;
            if chars.get(*at) != Some(&')') {
                return Err("an unclosed `(` in a path set".to_owned());
            }
            *at += 1;
            return Ok(inner);
        }
        let start = *at;
        while let Some(&c) = chars.get(*at) {
            if matches!(c, '|' | '&' | ',' | '(' | ')') {
                break;
            }
            *at += 1;
        }
        let atom: String = chars[start..*at].iter().collect();
        if atom.is_empty() {
            return Err("an empty pattern in a path set".to_owned());
        }
        Ok(Self::Atom(atom.trim().to_owned()))
    }
}

impl Values {
    fn parse(text: &str, separators: &[char]) -> Self {
        let text = text.trim();
        let list = |t: &str| {
            t.split(separators)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(rest) = text.strip_prefix("all but ") {
            return Self::AllBut(list(rest));
        }
        if text == "*" || text == "all" {
            return Self::All;
        }
        Self::Only(list(text))
    }

    pub(crate) fn admits(&self, value: &str, matches: impl Fn(&str, &str) -> bool) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.iter().any(|v| matches(v, value)),
            Self::AllBut(list) => !list.iter().any(|v| matches(v, value)),
            Self::Expr(expr, _) => expr.admits(value, &matches),
        }
    }

    pub(crate) fn listed(&self) -> &[String] {
        match self {
            Self::All => &[],
            Self::Only(list) | Self::AllBut(list) | Self::Expr(_, list) => list,
        }
    }

    /// A path set: a list, or an expression when it has parentheses.
    fn parse_paths(text: &str) -> Result<Self, String> {
        if !text.contains('(') {
            return Ok(Self::parse(text, &['|', ',']));
        }
        let expr = Expr::parse(text.trim())?;
        let mut atoms = Vec::new();
        expr.atoms(&mut atoms);
        Ok(Self::Expr(expr, atoms))
    }
}

/// What one `{...}` group admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) protocols: Values,
    pub(crate) ports: Values,
    pub(crate) methods: Values,
    pub(crate) paths: Values,
}

impl Group {
    const ALL: Group = Group {
        protocols: Values::All,
        ports: Values::All,
        methods: Values::All,
        paths: Values::All,
    };

    /// Whether it admits TCP `port`.
    pub(crate) fn admits_port(&self, port: u16) -> bool {
        self.protocols
            .admits("TCP", |a, b| a.eq_ignore_ascii_case(b))
            && self.ports.admits(&port.to_string(), port_matches)
    }
}

fn port_matches(spec: &str, port: &str) -> bool {
    let Ok(port) = port.parse::<u32>() else {
        return false;
    };
    match spec.split_once('-') {
        Some((low, high)) => {
            low.trim().parse::<u32>().is_ok_and(|l| l <= port)
                && high.trim().parse::<u32>().is_ok_and(|h| port <= h)
        }
        None => spec.trim().parse::<u32>() == Ok(port),
    }
}

/// One line of the map.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub(crate) from: Peer,
    pub(crate) to: Peer,
    /// Whether it came from the non-TCP section.
    pub(crate) non_tcp: bool,
    pub(crate) groups: Vec<Group>,
    /// The line as printed, for the report.
    pub(crate) text: String,
}

fn peer(text: &str) -> Peer {
    let text = text.trim();
    if let Some(open) = text.find('[')
        && let Some((ns, name)) = text[..open].split_once('/')
    {
        return Peer::Workload(ns.to_owned(), name.to_owned());
    }
    Peer::Other(text.to_owned())
}

/// Every connection of the map, or the line it could not read.
pub(crate) fn parse(output: &str) -> Result<Vec<Connection>, String> {
    let mut out = Vec::new();
    let mut non_tcp = false;
    for line in output.lines() {
        if line.starts_with("non-TCP Connections") {
            non_tcp = true;
            continue;
        }
        if line.starts_with("TCP Connections") {
            non_tcp = false;
            continue;
        }
        let Some((from, rest)) = line.split_once(" => ") else {
            continue;
        };
        let (to, conn) = rest
            .split_once(" : ")
            .ok_or_else(|| format!("no ` : ` in `{line}`"))?;
        out.push(Connection {
            from: peer(from),
            to: peer(to),
            non_tcp,
            groups: groups(conn.trim()).map_err(|e| format!("{e} in `{line}`"))?,
            text: line.to_owned(),
        });
    }
    Ok(out)
}

fn groups(conn: &str) -> Result<Vec<Group>, String> {
    if conn == "All connections" {
        return Ok(vec![Group::ALL]);
    }
    let mut out = Vec::new();
    let mut rest = conn;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| "an unclosed `{`".to_owned())?;
        out.push(group(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    if out.is_empty() {
        return Err(format!("unreadable connection `{conn}`"));
    }
    Ok(out)
}

fn group(body: &str) -> Result<Group, String> {
    // Fields are `key:value` separated by commas; a value may itself hold `, ` (methods).
    let mut fields: Vec<(String, String)> = Vec::new();
    for part in body.split(',') {
        let key = part.split_once(':').map(|(k, _)| k.trim());
        match key {
            Some(k) if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                let (k, v) = part.split_once(':').unwrap_or_default();
                fields.push((k.trim().to_owned(), v.to_owned()));
            }
            _ => match fields.last_mut() {
                Some((_, v)) => {
                    v.push(',');
                    v.push_str(part);
                }
                None => return Err(format!("unreadable field `{part}`")),
            },
        }
    }
    let mut g = Group::ALL;
    for (key, value) in fields {
        match key.as_str() {
            "protocols" => g.protocols = Values::parse(&value, &[',']),
            "dst_ports" => g.ports = Values::parse(&value, &[',']),
            "methods" => g.methods = Values::parse(&value, &[',', '|']),
            "paths" => g.paths = Values::parse_paths(&value)?,
            // Source ports and host names do not narrow what the mesh port admits.
            "src_ports" | "hosts" => {}
            other => return Err(format!("unknown field `{other}`")),
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{Peer, Values, parse};

    #[test]
    fn reads_a_connectivity_map() {
        let text = "TCP Connections:\nedge/web[Deployment] => catalog/app[Deployment] : {dst_ports:8443,methods:GET, POST,paths:/products|/products/*}\n\nnon-TCP Connections:\n";
        let c = parse(text).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].from, Peer::Workload("edge".into(), "web".into()));
        let g = &c[0].groups[0];
        assert!(g.admits_port(8443) && !g.admits_port(8080));
        assert_eq!(g.methods, Values::Only(vec!["GET".into(), "POST".into()]));
        assert_eq!(g.paths.listed(), ["/products", "/products/*"]);
        let e = parse("a/b[D] => c/d[D] : {dst_ports:1,paths:(((/p|/w)&(/p|/p/*))|((/p|/w)-((/p|/w)&(/p|/p/*))))|((/p|/p/*)-((/p|/w)&(/p|/p/*)))}").unwrap();
        let paths = &e[0].groups[0].paths;
        let m = |a: &str, b: &str| crate::kubernetes::paths::istio_matches(a, b);
        assert!(paths.admits("/p", m) && paths.admits("/w", m) && paths.admits("/p/x", m));
        assert!(!paths.admits("/q", m));
        let all = parse("a/b[Deployment] => c/d[Deployment] : All connections").unwrap();
        assert!(all[0].groups[0].admits_port(1));
    }
}
