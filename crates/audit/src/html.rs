//! The self-contained HTML report: a drawing of the segments and the allowed flows, the
//! placement on nodes when there is one, then the findings. No scripts, no external resources: it can be mailed to an assessor as one file.

use std::collections::BTreeMap;
use std::fmt::Write;

use septa_policy::Policy;

use crate::cluster::{Cluster, HopsText};
use crate::declared;
use crate::findings::Finding;
use crate::graph::{Edge, EdgeKind, Graph, Node};

const BOX_WIDTH: usize = 220;
const GAP: usize = 40;
const ROW: usize = 44;
const TOP: usize = 110;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where each place is drawn: its box's centre and half its width, by node.
type Positions = BTreeMap<usize, (usize, usize, usize)>;

/// The drawing's boxes: one column per segment with its functions, then the destinations.
struct Layout {
    svg: String,
    position: Positions,
    width: usize,
    height: usize,
}

/// Renders the report for `policy`.
pub fn render(policy: &Policy, graph: &Graph<'_>, findings: &[Finding]) -> String {
    let Layout {
        svg: svg_boxes,
        position,
        width,
        height,
    } = layout(policy, graph);
    let cluster = Cluster::of(policy);
    let svg_edges = edges_svg(graph, cluster, &position);
    let rows = finding_rows(findings);
    let flows = flow_rows(graph, cluster);
    let placement = cluster
        .map(|c| placement_section(policy, c))
        .unwrap_or_default();
    let (nodes_th, crossing_note) = if cluster.is_some() {
        (
            "<th>between nodes (over mTLS)</th>",
            " Dash-dotted edges go between nodes over mutual TLS, and the receiving node decides them again.",
        )
    } else {
        ("", "")
    };
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>septa audit: {app}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#1d2330}}
.segment rect{{fill:#f3f6fb;stroke:#7b8db0}} .title{{font-weight:600}}
.function rect{{fill:#fff;stroke:#34495e}} .function.audit rect{{stroke:#d08a00;stroke-dasharray:4 3}}
.subnet{{fill:#6b7280;font-size:11px}} .destination rect{{fill:#fff7ed;stroke:#c2410c}}
.gateway rect{{fill:#1d4ed8}} .edge{{fill:none;stroke-width:1.6}}
.route{{stroke:#1d4ed8}} .allow{{stroke:#15803d}} .egress{{stroke:#c2410c}} .auditedge{{stroke:#d08a00;stroke-dasharray:5 4}}
.crossnode{{stroke-dasharray:10 3 2 3}}
table{{border-collapse:collapse;margin:12px 0}} td,th{{border:1px solid #d1d5db;padding:4px 8px;text-align:left;vertical-align:top}}
tr.critical td:first-child{{background:#7f1d1d;color:#fff}} tr.high td:first-child{{background:#dc2626;color:#fff}}
tr.medium td:first-child{{background:#f59e0b}} tr.low td:first-child{{background:#fde68a}}
</style></head><body>
<h1>septa audit: application <code>{app}</code></h1>
<p>Generated from <code>{file}</code>. Every edge is an allowed flow and names the route or rule that opens it
(hover an edge for its conditions); everything without an edge is denied.{crossing_note}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="segments and allowed flows">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#374151"/></marker></defs>
<g class="gateway"><rect x="{gtx}" y="22" width="90" height="36" rx="18"/><text x="{gx}" y="45" fill="#fff" text-anchor="middle">internet</text></g>
{svg_boxes}{svg_edges}
</svg>
{placement}<h2>Findings</h2>
<table><tr><th>severity</th><th>kind</th><th>finding</th><th>rules</th><th>where</th></tr>{rows}</table>
<h2>Allowed flows</h2>
<table><tr><th>from</th><th>to</th><th>kind</th><th>rule</th><th>conditions</th>{nodes_th}</tr>{flows}</table>
</body></html>
"##,
        app = escape(declared::application(policy)),
        file = escape(&declared::file(policy).display().to_string()),
        gx = width / 2,
        gtx = width / 2 - 45,
    )
}

/// Lays out the boxes: one column per segment, its functions stacked by subnet; destinations
/// in a last column; the gateway above them all.
fn layout(policy: &Policy, graph: &Graph<'_>) -> Layout {
    let mut columns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for f in policy.functions() {
        columns
            .entry(f.spec.placement.segment.as_str())
            .or_default()
            .push(graph.function_node(f.id));
    }
    let destinations: Vec<usize> = (0..graph.nodes.len())
        .filter(|&n| matches!(graph.nodes[n], Node::Egress(_)))
        .collect();
    let mut position = Positions::new();
    let mut svg = String::new();
    let mut tallest = 0;
    for (column, (segment, nodes)) in columns.iter().enumerate() {
        let x = GAP + column * (BOX_WIDTH + GAP);
        tallest = tallest.max(ROW * (nodes.len() + 1));
        segment_svg(policy, graph, (segment, nodes), x, &mut svg, &mut position);
    }
    let dest_x = GAP + columns.len() * (BOX_WIDTH + GAP);
    for (row, &node) in destinations.iter().enumerate() {
        let y = TOP + ROW * (row + 1);
        position.insert(node, (dest_x + BOX_WIDTH / 2, y + 14, BOX_WIDTH / 2));
        let _ = write!(
            svg,
            r#"<g class="destination"><rect x="{dest_x}" y="{y}" width="{BOX_WIDTH}" height="28" rx="14"/><text x="{}" y="{}">{}</text></g>"#,
            dest_x + 12,
            y + 19,
            escape(graph.name(node))
        );
    }
    let width = dest_x + BOX_WIDTH + GAP;
    position.insert(0, (width / 2, 40, 0));
    let height = TOP + tallest.max(ROW * (destinations.len() + 1)) + GAP;
    Layout {
        svg,
        position,
        width,
        height,
    }
}

/// The box of one segment at `x` and the boxes of its functions inside it.
fn segment_svg(
    policy: &Policy,
    graph: &Graph<'_>,
    (segment, nodes): (&str, &[usize]),
    x: usize,
    svg: &mut String,
    position: &mut Positions,
) {
    let height = ROW * (nodes.len() + 1);
    let labels = declared::segment(policy, segment)
        .map(|s| {
            s.labels
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let _ = write!(
        svg,
        r#"<g class="segment"><rect x="{x}" y="{TOP}" width="{BOX_WIDTH}" height="{height}" rx="8"/><text x="{}" y="{}" class="title">segment {}{}</text></g>"#,
        x + 10,
        TOP + 18,
        escape(segment),
        if labels.is_empty() {
            String::new()
        } else {
            format!(" [{}]", escape(&labels))
        }
    );
    for (row, &node) in nodes.iter().enumerate() {
        let y = TOP + ROW * (row + 1);
        position.insert(node, (x + BOX_WIDTH / 2, y + 14, BOX_WIDTH / 2 - 10));
        let Node::Function(id) = graph.nodes[node] else {
            continue;
        };
        let f = policy.function(id);
        let _ = write!(
            svg,
            r#"<g class="function {}"><rect x="{}" y="{y}" width="{}" height="28" rx="4"/><text x="{}" y="{}">{} <tspan class="subnet">{} ({})</tspan></text></g>"#,
            if f.audit { "audit" } else { "" },
            x + 10,
            BOX_WIDTH - 20,
            x + 18,
            y + 19,
            escape(f.spec.name.as_str()),
            escape(f.spec.placement.subnet.as_str()),
            f.spec.subnet_kind
        );
    }
}

/// The placement: the trust domain, and what each node runs.
fn placement_section(policy: &Policy, cluster: Cluster<'_>) -> String {
    let mut rows = String::new();
    for node in cluster.nodes() {
        let hosted: Vec<&str> = cluster
            .hosted_by(node)
            .into_iter()
            .map(|f| policy.function(f).identity.as_str())
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(node),
            escape(&cluster.spiffe_id(node)),
            escape(&hosted.join(", "))
        );
    }
    format!(
        "<h2 id=\"placement\">Placement</h2>\n<p>Trust domain <code>{}</code>. Each node runs what it hosts and calls the others over mutual TLS for the rest.</p>\n<table><tr><th>node</th><th>certificate</th><th>runs</th></tr>{rows}</table>\n",
        escape(cluster.trust_domain())
    )
}

/// Between which nodes the flow `edge` goes, in words; empty when it stays on one node.
fn hops_text(graph: &Graph<'_>, cluster: Cluster<'_>, edge: &Edge) -> String {
    let hops = cluster.flow_hops(&graph.nodes[edge.from], &graph.nodes[edge.to]);
    if hops.is_empty() {
        String::new()
    } else {
        HopsText(&hops).to_string()
    }
}

/// Every allowed flow as a curve between its two boxes, titled with its rule; dash-dotted when
/// it goes between nodes.
fn edges_svg(graph: &Graph<'_>, cluster: Option<Cluster<'_>>, position: &Positions) -> String {
    let mut svg_edges = String::new();
    for edge in graph.edges() {
        let (Some(&(cx1, cy1, h1)), Some(&(cx2, cy2, h2))) =
            (position.get(&edge.from), position.get(&edge.to))
        else {
            continue;
        };
        // Leave and enter boxes by their sides; within one column, loop out to the right.
        let (x1, y1, x2, y2, bend_x) = if edge.from == 0 {
            (cx1, cy1 + 18, cx2, cy2 - 14, (cx1 + cx2) / 2)
        } else if cx2 > cx1 {
            (cx1 + h1, cy1, cx2 - h2, cy2, (cx1 + cx2) / 2)
        } else if cx2 < cx1 {
            (cx1 - h1, cy1, cx2 + h2, cy2, (cx1 + cx2) / 2)
        } else {
            (cx1 + h1, cy1, cx2 + h2, cy2, cx1 + h1 + 36)
        };
        let bend_y = (y1 + y2) / 2;
        let class = match edge.kind {
            EdgeKind::Route => "route",
            EdgeKind::Allow => "allow",
            EdgeKind::Egress => "egress",
            EdgeKind::Audit => "auditedge",
        };
        let hops = cluster
            .map(|c| hops_text(graph, c, edge))
            .unwrap_or_default();
        let (crossing, over) = if hops.is_empty() {
            ("", String::new())
        } else {
            (" crossnode", format!("; over mTLS: {hops}"))
        };
        let _ = write!(
            svg_edges,
            r#"<path class="edge {class}{crossing}" d="M{x1},{y1} Q{bend_x},{bend_y} {x2},{y2}" marker-end="url(#arrow)"><title>{} → {}: {} `{}` ({}){}</title></path>"#,
            escape(graph.name(edge.from)),
            escape(graph.name(edge.to)),
            class,
            escape(&edge.rule),
            escape(&edge.conditions),
            escape(&over)
        );
    }
    svg_edges
}

/// One table row per finding.
fn finding_rows(findings: &[Finding]) -> String {
    let mut rows = String::new();
    for f in findings {
        let _ = write!(
            rows,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.severity.as_str(),
            f.severity.as_str(),
            escape(f.kind),
            escape(&f.message),
            escape(&f.rules.join(", ")),
            escape(f.location.as_deref().unwrap_or(""))
        );
    }
    rows
}

/// One table row per allowed flow; with a cluster, with the calls it makes between nodes.
fn flow_rows(graph: &Graph<'_>, cluster: Option<Cluster<'_>>) -> String {
    let mut flows = String::new();
    for edge in graph.edges() {
        let nodes = cluster.map_or_else(String::new, |c| {
            format!("<td>{}</td>", escape(&hops_text(graph, c, edge)))
        });
        let _ = write!(
            flows,
            "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td>{nodes}</tr>",
            escape(graph.name(edge.from)),
            escape(graph.name(edge.to)),
            edge.kind,
            escape(&edge.rule),
            escape(&edge.conditions)
        );
    }
    flows
}
