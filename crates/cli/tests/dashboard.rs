//! The dashboard, end to end: headless Chromium logs in to the admin listener of `septa up` on
//! a copy of the example shop, finds every segment, subnet, function and endpoint drawn, the
//! shop's nodes listed with what each runs and the flows between nodes drawn apart, sees a
//! request through the gateway light its edges and a denial appear with its reason, opens a
//! node's rules, blast radius and nodes, sees a refused reload, and takes a screenshot. Without a
//! browser: the login and the session cookie that guard it, and a gateway that serves none of
//! it.
//!
//! Without Chromium the browser test skips, saying so, unless `SEPTA_REQUIRE_CHROMIUM=1` (as in
//! `.ci/run`), when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chromium;
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Response, Septa, encode, repo, send_to};

const TOKEN: &str = "dashboard-test-token-0123456789";
const ADMIN: &[&str] = &["--admin", "127.0.0.1:0"];
const WAIT: Duration = Duration::from_secs(20);

/// A copy of the example shop (its manifest and keys; the built functions linked), so a test
/// may break its manifest without touching the example.
fn shop_copy() -> tempfile::TempDir {
    let shop = repo().join("examples/shop");
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(shop.join("septa.toml"), copy.path().join("septa.toml")).unwrap();
    std::fs::create_dir(copy.path().join("keys")).unwrap();
    for entry in std::fs::read_dir(shop.join("keys")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            copy.path().join("keys").join(entry.file_name()),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(shop.join("functions"), copy.path().join("functions")).unwrap();
    copy
}

fn start_shop() -> (tempfile::TempDir, Septa) {
    let app = shop_copy();
    let septa = Septa::start_with_env(app.path(), ADMIN, &[("SEPTA_ADMIN_TOKEN", TOKEN)]);
    (app, septa)
}

/// Chromium, or `None` (after saying why) when it is missing and not required.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium::find();
    if found.is_none() {
        assert_ne!(
            std::env::var("SEPTA_REQUIRE_CHROMIUM").as_deref(),
            Ok("1"),
            "SEPTA_REQUIRE_CHROMIUM=1 but no Chromium found (install Debian's `chromium`, or set SEPTA_CHROMIUM)"
        );
        eprintln!(
            "skipped: no Chromium on PATH (install Debian's `chromium`, or set SEPTA_CHROMIUM); SEPTA_REQUIRE_CHROMIUM=1 makes this a failure"
        );
    }
    found
}

/// A JavaScript expression: the drawn edge `key`'s `data-NAME` as a number (0 if not drawn).
fn edge_data(key: &str, name: &str) -> String {
    format!(
        "Number([...document.querySelectorAll('#graph .edge')].find(e => e.dataset.edge === {key:?})?.dataset.{name} || 0)"
    )
}

#[test]
fn the_dashboard_draws_the_shop_and_lights_its_flows_in_a_browser() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let started = Instant::now();
    let (app, septa) = start_shop();
    let admin = septa.admin.unwrap();
    let manifest = septa_manifest::load(app.path()).unwrap();

    let mut browser = chromium::Browser::launch(&binary);
    let mut page = browser.open("about:blank");
    page.navigate(&format!("http://{admin}/login?token={}", encode(TOKEN)));
    page.wait_for(
        "the dashboard drawn, with its live stream open",
        "document.body?.dataset.ready === 'true' && document.getElementById('stream')?.dataset.state === 'open'",
        WAIT,
    );
    assert_eq!(page.eval("location.pathname").unwrap(), "/dashboard");
    assert_eq!(
        page.eval("document.cookie").unwrap(),
        "",
        "the session cookie is HttpOnly"
    );

    // Every segment, subnet, function and endpoint of the shop, and the gateway.
    let drawn = |page: &mut chromium::Page<'_>, attribute: &str| -> Vec<String> {
        let js = format!(
            "[...document.querySelectorAll('#graph [data-{attribute}]')].map(e => e.dataset.{attribute})"
        );
        serde_json::from_value(page.eval(&js).unwrap()).unwrap()
    };
    let segments = drawn(&mut page, "segment");
    let subnets = drawn(&mut page, "subnet");
    let nodes = drawn(&mut page, "node");
    for (name, segment) in &manifest.segments {
        assert!(segments.contains(&name.to_string()), "{name}: {segments:?}");
        for subnet in segment.subnets.keys() {
            let id = format!("{name}/{subnet}");
            assert!(subnets.contains(&id), "{id}: {subnets:?}");
        }
    }
    for function in manifest.functions.values() {
        assert!(
            nodes.contains(&function.identity()),
            "{}: {nodes:?}",
            function.identity()
        );
    }
    assert!(nodes.contains(&"gateway".to_owned()), "{nodes:?}");
    assert!(nodes.contains(&"endpoint:carts".to_owned()), "{nodes:?}");

    the_nodes_and_the_flows_between_them_are_shown(&mut page);

    // A real request through the gateway lights the route's edge and the mesh call's.
    let ingress = edge_data("gateway -> function:storefront", "count");
    let mesh = edge_data("function:storefront -> function:catalog", "count");
    assert_eq!(page.eval(&ingress).unwrap(), 0);
    let products = septa.get("/api/products");
    assert_eq!(products.status, 200, "{products:?}");
    page.wait_for(
        "the request counted on its edges",
        &format!("{ingress} >= 1 && {mesh} >= 1"),
        WAIT,
    );

    // The segments the request ran in show the CPU their guests used; one it did not reach
    // shows none.
    for segment in ["edge", "catalog"] {
        let shown = page.wait_for(
            &format!("segment {segment}'s CPU shown"),
            &format!(
                "(() => {{ const g = document.querySelector('#graph .segment[data-segment=\"{segment}\"]'); \
                 return g && Number(g.dataset.cpuSeconds) > 0 ? g.querySelector('text.cpu').textContent : null; }})()"
            ),
            WAIT,
        );
        let shown = shown.as_str().unwrap();
        assert!(shown.contains("% of a core"), "{segment}: {shown:?}");
    }
    let payments = page
        .eval("document.querySelector('#graph .segment[data-segment=\"payments\"]').dataset.cpuSeconds")
        .unwrap();
    assert_eq!(payments, "0.000000", "no guest of payments ran");

    // A denied call that no rule allows: a red dashed edge, and the reason in the denials.
    let refused = septa.get(&format!(
        "/relay/?to={}",
        encode("http://ledger.internal/entries")
    ));
    assert_eq!(refused.json()["denied"], true, "{}", refused.body);
    let flow = septa.wait_flow("of the relay's call to the ledger", |f| {
        f["src"] == "function:relay" && f["dst"] == "function:ledger"
    });
    let denied = edge_data("function:relay -> function:ledger", "denied");
    page.wait_for("the denied flow drawn", &format!("{denied} >= 1"), WAIT);
    let classes = page
        .eval("[...document.querySelectorAll('#graph .edge')].find(e => e.dataset.edge === 'function:relay -> function:ledger').getAttribute('class')")
        .unwrap();
    assert!(classes.as_str().unwrap().contains("denied"), "{classes}");
    let listed = page
        .wait_for(
            "the denial listed",
            "document.querySelector('#denials li[data-dst=\"function:ledger\"]')?.textContent",
            WAIT,
        )
        .as_str()
        .unwrap()
        .to_owned();
    let reason = flow["reason"].as_str().unwrap();
    assert!(listed.contains(reason), "{listed:?} lacks {reason:?}");

    // Clicking a node shows the rules that touch it and its blast radius.
    page.eval("document.querySelector('[data-node=\"function:checkout\"]').dispatchEvent(new MouseEvent('click', { bubbles: true }))")
        .unwrap();
    page.wait_for(
        "checkout's blast radius",
        "document.getElementById('blast-radius')?.dataset.count === '2'",
        WAIT,
    );
    let details = page
        .eval("document.getElementById('details').textContent")
        .unwrap();
    for expected in [
        "storefront-to-checkout",
        "checkout-to-ledger",
        "checkout-to-processor",
        "function:ledger",
        "https://api.payments.example:443",
        "nodespay-1, pay-2",
    ] {
        assert!(
            details.as_str().unwrap().contains(expected),
            "{expected}: {details}"
        );
    }
    let reached = page
        .eval(
            "[...document.querySelectorAll('#graph .node.reach')].map(e => e.dataset.node).sort()",
        )
        .unwrap();
    assert_eq!(
        reached,
        serde_json::json!(["function:ledger", "https://api.payments.example:443"])
    );

    // A reload of a broken manifest is refused, and the dashboard says so.
    std::fs::write(
        app.path().join("septa.toml"),
        "septa_manifest_version = 1\n[application\n",
    )
    .unwrap();
    page.eval("document.getElementById('reload-button').click()")
        .unwrap();
    page.wait_for(
        "the refused reload shown",
        "document.getElementById('reload').dataset.state === 'refused'",
        WAIT,
    );
    let shown = page
        .eval("document.getElementById('reload').textContent")
        .unwrap();
    assert!(
        shown.as_str().unwrap().contains("old policy keeps serving"),
        "{shown}"
    );

    let png = page.screenshot();
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&file, &png).unwrap();
    assert_png(&png);
    eprintln!(
        "dashboard: browser test took {:?}; screenshot at {}",
        started.elapsed(),
        file.display()
    );
}

/// The shop's `[cluster]`: a "Nodes" section with what each node runs, the flows between nodes
/// drawn dash-dotted and said so in the legend, an edge's details naming the nodes it goes
/// between, a node's places marked when it is clicked, and a flow line naming the node that
/// recorded it and its peer. `septa up` writes no such record, so one is handed to the page as
/// the stream would (a node's record, with `node` and `peer`).
fn the_nodes_and_the_flows_between_them_are_shown(page: &mut chromium::Page<'_>) {
    let listed = page
        .eval("document.getElementById('cluster').hidden ? null : [...document.querySelectorAll('#cluster-nodes li')].map(l => l.textContent)")
        .unwrap();
    assert_eq!(
        listed,
        serde_json::json!([
            "edge-1 function:catalog, function:relay, function:storefront",
            "pay-1 endpoint:carts, function:checkout, function:ledger",
            "pay-2 function:checkout, function:ledger",
        ])
    );
    assert_eq!(
        page.eval("document.getElementById('trust-domain').textContent")
            .unwrap(),
        "trust domain shop.example"
    );
    assert_eq!(
        page.eval("document.getElementById('legend-crosses').hidden")
            .unwrap(),
        false
    );
    let crossing = page
        .eval("[...document.querySelectorAll('#graph .edge.crosses-nodes')].map(e => e.dataset.edge).sort()")
        .unwrap();
    assert_eq!(
        crossing,
        serde_json::json!([
            "function:storefront -> endpoint:carts",
            "function:storefront -> function:checkout",
            "gateway -> function:relay",
            "gateway -> function:storefront",
        ])
    );
    // Drawn apart: dash-dotted, where a flow on one node is a solid line.
    let mut dashes = |key: &str| {
        page.eval(&format!(
            "getComputedStyle([...document.querySelectorAll('#graph .edge')].find(e => e.dataset.edge === {key:?}).querySelector('path')).strokeDasharray"
        ))
        .unwrap()
    };
    assert_eq!(
        dashes("function:storefront -> function:checkout"),
        "10px, 3px, 2px, 3px"
    );
    assert_eq!(dashes("function:storefront -> function:catalog"), "none");

    page.eval("[...document.querySelectorAll('#graph .edge')].find(e => e.dataset.edge === 'function:storefront -> function:checkout').dispatchEvent(new MouseEvent('click', { bubbles: true }))")
        .unwrap();
    let said = page.wait_for(
        "the edge's nodes",
        "document.getElementById('edge-crossing')?.textContent",
        WAIT,
    );
    assert_eq!(
        said,
        "Between nodes over mTLS: edge-1 → pay-1, pay-2; the receiving node decides it again."
    );

    page.eval("document.querySelector('#cluster-nodes li[data-cluster-node=\"pay-2\"]').click()")
        .unwrap();
    let hosted = page
        .eval(
            "[...document.querySelectorAll('#graph .node.hosted')].map(e => e.dataset.node).sort()",
        )
        .unwrap();
    assert_eq!(
        hosted,
        serde_json::json!(["function:checkout", "function:ledger"])
    );
    page.eval("document.getElementById('graph').dispatchEvent(new MouseEvent('click', { bubbles: true }))")
        .unwrap();

    page.eval(
        r#"onFlow({ time: "2026-12-01T10:00:00.000Z", kind: "mesh", src: "function:storefront",
                    dst: "function:checkout", method: "POST", path: "/charge", verdict: "allow",
                    rule: "storefront-to-checkout", node: "pay-1", peer: "edge-1" })"#,
    )
    .unwrap();
    let line = page
        .eval("document.querySelector('#flows li[data-node=\"pay-1\"][data-peer=\"edge-1\"]')?.textContent")
        .unwrap();
    assert_eq!(
        line,
        "10:00:00 allow function:storefront → function:checkout POST /charge [storefront-to-checkout] (node pay-1, peer edge-1)"
    );
}

/// A PNG of a page-sized image: the signature, then an IHDR chunk with its dimensions.
fn assert_png(png: &[u8]) {
    assert!(png.len() > 10_000, "a {}-byte screenshot", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width >= 800 && height >= 500, "{width}x{height}");
}

#[test]
fn the_admin_api_reports_the_cpu_each_segment_used() {
    let (_app, septa) = start_shop();
    let refused = admin_request(&septa, "GET", "/cpu", &[], "");
    assert_eq!(refused.status, 401, "{refused:?}");

    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let products = septa.get("/api/products");
    assert_eq!(products.status, 200, "{products:?}");
    // A guest's CPU is charged when it is over, which may be just after its answer.
    let deadline = Instant::now() + WAIT;
    let cpu = loop {
        let r = admin_request(&septa, "GET", "/cpu", &auth, "");
        assert_eq!(r.status, 200, "{r:?}");
        let cpu = r.json();
        let ran = |name: &str| {
            cpu["functions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["function"] == name && f["cpu_seconds"].as_f64().unwrap() > 0.0)
        };
        if ran("storefront") && ran("catalog") {
            break cpu;
        }
        assert!(Instant::now() < deadline, "no CPU charged yet: {cpu}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let segment = |name: &str| {
        cpu["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["segment"] == name)
            .cloned()
    };
    // Each segment's figure is the sum of its functions'.
    for name in ["edge", "catalog"] {
        let total = segment(name).unwrap()["cpu_seconds"].as_f64().unwrap();
        let sum: f64 = cpu["functions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["segment"] == name)
            .map(|f| f["cpu_seconds"].as_f64().unwrap())
            .sum();
        assert!(total > 0.0 && (total - sum).abs() < 1e-9, "{name}: {cpu}");
    }
    // The payments segment ran nothing.
    if let Some(payments) = segment("payments") {
        assert_eq!(payments["cpu_seconds"], 0.0, "{cpu}");
    }
}

/// A raw request to the admin listener.
fn admin_request(
    septa: &Septa,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        septa.admin.unwrap()
    );
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    send_to(septa.admin.unwrap(), &raw)
}

#[test]
fn the_dashboard_wants_the_token_or_a_session_from_it() {
    let (_app, septa) = start_shop();
    let admin = septa.admin.unwrap();

    // Nothing, or a cookie this septa never issued: 401, with a way to log in.
    for cookie in [
        None,
        Some("septa_admin=v1.1.00"),
        Some("septa_admin=dashboard-test-token-0123456789"),
    ] {
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", *c)).collect();
        for path in ["/dashboard", "/dashboard.js", "/model", "/flows"] {
            let r = admin_request(&septa, "GET", path, &headers, "");
            assert_eq!(r.status, 401, "{path} with {cookie:?}: {r:?}");
            assert!(
                r.header("www-authenticate").unwrap().starts_with("Bearer"),
                "{path}"
            );
            assert!(!r.body.contains("segment"), "{path} leaked: {}", r.body);
        }
        let page = admin_request(&septa, "GET", "/dashboard", &headers, "");
        assert!(
            page.body
                .contains("<form method=\"post\" action=\"/login\">"),
            "{}",
            page.body
        );
    }
    let forged = admin_request(
        &septa,
        "GET",
        "/dashboard",
        &[("cookie", "septa_admin=v1.1.00")],
        "",
    );
    assert!(
        forged.header("set-cookie").unwrap().contains("Max-Age=0"),
        "{forged:?}"
    );

    // A wrong token: 401 and no cookie, however it is presented.
    for r in [
        admin_request(
            &septa,
            "GET",
            "/login?token=not-the-token-0123456789",
            &[],
            "",
        ),
        admin_request(&septa, "GET", "/login", &[], ""),
        admin_request(
            &septa,
            "POST",
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "token=not-the-token-0123456789",
        ),
        admin_request(
            &septa,
            "POST",
            "/login",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            "",
        ),
    ] {
        assert_eq!(r.status, 401, "{r:?}");
        assert!(r.header("set-cookie").is_none(), "{r:?}");
    }

    // The right token, in a form: a session cookie that is not the token, and a redirect.
    let login = admin_request(
        &septa,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={}", encode(TOKEN)),
    );
    assert_eq!(login.status, 303, "{login:?}");
    assert_eq!(login.header("location"), Some("/dashboard"));
    let set_cookie = login.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(TOKEN),
        "the token itself is in the cookie: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let with_cookie = [("cookie", cookie.as_str())];
    let page = admin_request(&septa, "GET", "/dashboard", &with_cookie, "");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(page.body.contains("/dashboard.js"));
    for path in [
        "/dashboard.js",
        "/dashboard.css",
        "/model",
        "/flows",
        "/reload",
        "/healthz",
    ] {
        let r = admin_request(&septa, "GET", path, &with_cookie, "");
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    let model = admin_request(&septa, "GET", "/model", &with_cookie, "").json();
    assert_eq!(model["application"], "shop");
    let via_link = admin_request(
        &septa,
        "GET",
        &format!("/login?token={}", encode(TOKEN)),
        &[],
        "",
    );
    assert_eq!(via_link.status, 303, "{via_link:?}");
    assert!(via_link.header("set-cookie").is_some());
    // The bearer header still works for the page, and a wrong one loses even with a cookie.
    let bearer = format!("Bearer {TOKEN}");
    let r = admin_request(
        &septa,
        "GET",
        "/dashboard",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(r.status, 200);
    let wrong = "Bearer not-the-token-0123456789";
    let r = admin_request(
        &septa,
        "GET",
        "/model",
        &[("authorization", wrong), with_cookie[0]],
        "",
    );
    assert_eq!(r.status, 401);

    // A state-changing request with only the cookie must come from the dashboard itself.
    let own_origin = format!("http://{admin}");
    for headers in [
        vec![with_cookie[0]],
        vec![with_cookie[0], ("origin", own_origin.as_str())],
        vec![with_cookie[0], ("x-septa-dashboard", "1")],
        vec![
            with_cookie[0],
            ("x-septa-dashboard", "1"),
            ("origin", "http://evil.example"),
        ],
    ] {
        let r = admin_request(&septa, "POST", "/reload", &headers, "");
        assert_eq!(r.status, 403, "{headers:?}: {r:?}");
    }
    let from_dashboard = admin_request(
        &septa,
        "POST",
        "/reload",
        &[
            with_cookie[0],
            ("x-septa-dashboard", "1"),
            ("origin", own_origin.as_str()),
        ],
        "",
    );
    assert_ne!(from_dashboard.status, 403, "{from_dashboard:?}");
    assert_ne!(from_dashboard.status, 401, "{from_dashboard:?}");
    let with_bearer = admin_request(&septa, "POST", "/reload", &[("authorization", &bearer)], "");
    assert_ne!(
        with_bearer.status, 403,
        "a bearer token needs no CSRF proof: {with_bearer:?}"
    );

    // The gateway serves none of it.
    for path in [
        "/dashboard",
        "/dashboard.js",
        "/login",
        &format!("/login?token={TOKEN}"),
    ] {
        let r = septa.get(path);
        assert_eq!(r.status, 404, "gateway {path}: {r:?}");
        assert!(r.header("set-cookie").is_none());
    }
}
