//! The example shop end to end: real HTTP to `septa up examples/shop`, real components, and the
//! flow log it writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Septa, encode, repo};

fn shop() -> Septa {
    Septa::start(&repo().join("examples/shop"))
}

#[test]
fn ingress_routes_and_refuses_what_is_not_routed() {
    let septa = shop();
    let home = septa.get("/");
    assert_eq!(home.status, 200, "{home:?}");

    let missing = septa.get("/admin");
    assert_eq!(missing.status, 404);
    let wrong_method = septa.request("DELETE", "/", &[], "");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("GET"));

    let flows = septa.stop();
    let home_flow = flows
        .iter()
        .find(|f| f["kind"] == "ingress" && f["path"] == "/")
        .unwrap();
    assert_eq!(home_flow["verdict"], "allow");
    assert_eq!(home_flow["rule"], "home");
    assert_eq!(home_flow["dst"], "function:storefront");
    assert_eq!(home_flow["status"], 200);
    let missing_flow = flows.iter().find(|f| f["path"] == "/admin").unwrap();
    assert_eq!(missing_flow["verdict"], "deny");
    assert_eq!(missing_flow["status"], 404);
    assert!(
        missing_flow["reason"]
            .as_str()
            .unwrap()
            .contains("no route")
    );
}

#[test]
fn ambiguous_paths_are_refused_not_guessed() {
    let septa = shop();
    for path in [
        "/api/%2e%2e/x",
        "/api/a%2Fb",
        "//api/products",
        "/api/./products",
        "/api/../relay/",
        "/api\\products",
    ] {
        let r = septa.get(path);
        assert_eq!(r.status, 400, "{path}: {r:?}");
    }
    // An encoded unreserved character is the same path as its literal form.
    assert_eq!(septa.get("/api/product%73").status, 200);
}

#[test]
fn allowed_mesh_calls_go_through_and_name_their_rule() {
    let septa = shop();
    let products = septa.get("/api/products");
    assert_eq!(products.status, 200, "{products:?}");
    assert!(products.body.contains("products"), "{}", products.body);

    let checkout = septa.request(
        "POST",
        "/api/checkout",
        &[("content-type", "application/json")],
        r#"{"amount_cents":1250}"#,
    );
    assert_eq!(checkout.status, 200, "{checkout:?}");
    let json = checkout.json();
    assert_eq!(json["result"]["charged"], true, "{json}");
    assert_eq!(json["result"]["caller"], "function:storefront", "{json}");

    let flows = septa.stop();
    let mesh = |src: &str, dst: &str| {
        flows
            .iter()
            .find(|f| f["kind"] == "mesh" && f["src"] == src && f["dst"] == dst)
            .unwrap_or_else(|| panic!("no mesh flow {src} -> {dst} in {flows:#?}"))
    };
    assert_eq!(
        mesh("function:storefront", "function:catalog")["rule"],
        "storefront-to-catalog"
    );
    assert_eq!(
        mesh("function:storefront", "function:checkout")["rule"],
        "storefront-to-checkout"
    );
    assert_eq!(
        mesh("function:checkout", "function:ledger")["rule"],
        "checkout-to-ledger"
    );
    for f in flows.iter().filter(|f| f["verdict"] == "allow") {
        assert!(f["rule"].is_string(), "an allow without its rule: {f}");
    }
}

#[test]
fn a_call_no_rule_allows_is_denied_visibly_and_logged() {
    let septa = shop();
    let r = septa.get("/api/ledger");
    assert_eq!(r.status, 200, "{r:?}");
    let json = r.json();
    assert_eq!(json["denied"], true, "{json}");
    assert_eq!(json["status"], 403, "{json}");

    let flow = septa.wait_flow("storefront -> ledger", |f| {
        f["kind"] == "mesh" && f["dst"] == "function:ledger"
    });
    assert_eq!(flow["verdict"], "deny");
    assert_eq!(flow["src"], "function:storefront");
    assert!(flow["rule"].is_null());
    assert_eq!(
        flow["reason"],
        "no allow rule from `function:storefront` to `function:ledger`"
    );
}

#[test]
fn denial_holds_for_every_spelling_of_the_destination() {
    let septa = shop();
    for url in [
        "http://ledger.internal/entries",
        "http://LEDGER.internal/entries",
        "http://ledger.INTERNAL./entries",
        "http://ledger.internal:8080/entries",
        "https://ledger.internal/entries",
    ] {
        let r = septa.get(&format!("/relay/?to={}", encode(url)));
        let json = r.json();
        assert_eq!(json["denied"], true, "{url}: {json}");
    }
}

#[test]
fn rules_bind_methods_and_paths() {
    let septa = shop();
    // relay-to-catalog admits GET /whoami and /products only.
    let post = septa.get(&format!(
        "/relay/?to={}&method=POST",
        encode("http://catalog.internal/whoami")
    ));
    assert_eq!(post.json()["denied"], true, "{}", post.body);
    let other_path = septa.get(&format!(
        "/relay/?to={}",
        encode("http://catalog.internal/admin")
    ));
    assert_eq!(other_path.json()["denied"], true, "{}", other_path.body);
    let allowed = septa.get(&format!(
        "/relay/?to={}",
        encode("http://catalog.internal/products")
    ));
    assert_eq!(allowed.json()["status"], 200, "{}", allowed.body);

    let flows = septa.stop();
    let reasons: Vec<&str> = flows
        .iter()
        .filter(|f| f["kind"] == "mesh" && f["verdict"] == "deny")
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("method `POST` is not admitted by rule `relay-to-catalog`")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("path `/admin` is not admitted by rule `relay-to-catalog`")),
        "{reasons:?}"
    );
}

#[test]
fn the_host_sets_identity_and_drops_spoofed_headers() {
    let septa = shop();
    // A client claiming to be a PCI function is still the gateway to the function it reaches.
    let r = septa.request(
        "GET",
        "/relay/whoami",
        &[("septa-caller", "function:checkout")],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["caller"], "gateway", "{}", r.body);

    // Spellings a guest's HTTP adapter may fold into `septa-caller` (CGI and WSGI map `_` and
    // `-` alike) never reach the function either.
    let variants = [
        ("septa_caller", "function:checkout"),
        ("Septa_Principal", "admin"),
        ("SEPTA.CLAIM.TENANT", "acme"),
    ];
    let r = septa.request("GET", "/relay/whoami", &variants, "");
    assert_eq!(r.status, 200, "{r:?}");
    let seen = r.json();
    assert_eq!(seen["caller"], "gateway", "{seen}");
    let names: Vec<&String> = seen["headers"].as_object().unwrap().keys().collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("septa") && n.as_str() != "septa-caller"),
        "{names:?}"
    );

    // A guest claiming another identity on a mesh call is still itself, in any spelling.
    let url = encode("http://catalog.internal/whoami");
    for spoof in [
        "septa-caller",
        "septa_caller",
        "Septa_Caller",
        "septa.caller",
    ] {
        let spoof = encode(&format!("{spoof}:function:checkout"));
        let r = septa.get(&format!("/relay/?to={url}&header={spoof}"));
        let json = r.json();
        assert_eq!(json["status"], 200, "{json}");
        let seen: serde_json::Value = serde_json::from_str(json["body"].as_str().unwrap()).unwrap();
        assert_eq!(seen["caller"], "function:relay", "{seen}");
        let names: Vec<&String> = seen["headers"].as_object().unwrap().keys().collect();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("septa") && n.as_str() != "septa-caller"),
            "{spoof}: {names:?}"
        );
    }
}

#[test]
fn the_flow_log_has_one_record_per_decision() {
    let septa = shop();
    let n = 5;
    for _ in 0..n {
        assert_eq!(septa.get("/api/products").status, 200);
    }
    let flows = septa.stop();
    let ingress = flows
        .iter()
        .filter(|f| f["kind"] == "ingress" && f["path"] == "/api/products")
        .count();
    let mesh = flows
        .iter()
        .filter(|f| f["kind"] == "mesh" && f["dst"] == "function:catalog")
        .count();
    assert_eq!(ingress, n, "{flows:#?}");
    assert_eq!(mesh, n, "{flows:#?}");
    for f in &flows {
        for field in [
            "time",
            "kind",
            "src",
            "dst",
            "verdict",
            "reason",
            "bytes_in",
            "bytes_out",
            "latency_us",
        ] {
            assert!(!f[field].is_null(), "record without `{field}`: {f}");
        }
    }
}

#[test]
fn the_gateway_speaks_http2_too() {
    let septa = shop();
    let addr = septa.addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = runtime.block_on(async move {
        use http_body_util::{BodyExt, Empty};
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::get(format!("http://{addr}/api/products"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    assert_eq!(status, 200);
    assert!(body.contains("products"), "{body}");
}

#[test]
fn bytes_in_and_out_are_counted() {
    let septa = shop();
    let body = r#"{"amount_cents":1250}"#;
    let r = septa.request("POST", "/api/checkout", &[], body);
    assert_eq!(r.status, 200);
    let flows = septa.stop();
    let ingress = flows
        .iter()
        .find(|f| f["kind"] == "ingress" && f["path"] == "/api/checkout")
        .unwrap();
    assert_eq!(ingress["bytes_in"], body.len(), "{ingress}");
    assert_eq!(ingress["bytes_out"], r.body.len(), "{ingress}");
}

/// What the README shows: a token minted by `examples/shop/mint-token`, and the demo API key.
fn mint(subject: &str, scope: &str) -> String {
    let out = std::process::Command::new(repo().join("examples/shop/mint-token"))
        .args([subject, scope])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn signed_in_customers_and_partners_get_in_and_nobody_else_does() {
    let septa = shop();
    let bearer = |token: &str| format!("Bearer {token}");

    let alice = septa.request(
        "GET",
        "/api/orders",
        &[("authorization", &bearer(&mint("alice", "orders:read")))],
        "",
    );
    assert_eq!(alice.status, 200, "{alice:?}");
    let body = alice.json();
    assert_eq!(body["customer"], "alice");
    assert_eq!(body["email"], "alice@shop.example");
    assert_eq!(alice.header("ratelimit-limit"), Some("10"));

    let no_token = septa.get("/api/orders");
    assert_eq!(no_token.status, 401);
    let no_scope = septa.request(
        "GET",
        "/api/orders",
        &[("authorization", &bearer(&mint("bob", "profile")))],
        "",
    );
    assert_eq!(no_scope.status, 403);
    // `/api/orders/` would match the open `api` route, but a function that folds trailing
    // slashes would serve it as `/api/orders`: refused as ambiguous, never routed to `api`.
    assert_eq!(septa.get("/api/orders/").status, 400);
    assert_eq!(septa.get("/api/ORDERS").status, 400);

    let partner = septa.request(
        "GET",
        "/partner/products",
        &[("x-api-key", "acme-demo-key")],
        "",
    );
    assert_eq!(partner.status, 200, "{partner:?}");
    assert_eq!(partner.json()["partner"], "acme");
    assert!(partner.json()["products"].is_array());
    let wrong_key = septa.request("GET", "/partner/products", &[("x-api-key", "guess")], "");
    assert_eq!(wrong_key.status, 401);
    // The partner's burst is 5: the sixth call in a row waits.
    let statuses: Vec<u16> = (0..5)
        .map(|_| {
            septa
                .request(
                    "GET",
                    "/partner/products",
                    &[("x-api-key", "acme-demo-key")],
                    "",
                )
                .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429]);

    let flows = septa.stop();
    let orders: Vec<_> = flows.iter().filter(|f| f["route"] == "orders").collect();
    assert_eq!(orders.len(), 3, "{orders:?}");
    assert_eq!(orders[0]["verdict"], "allow");
    assert_eq!(orders[1]["reason"], "jwt: no bearer token");
    assert!(
        orders[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("jwt: missing scope `orders:read`")
    );
}

#[test]
fn carts_live_in_a_private_endpoint_only_the_storefront_reaches() {
    let septa = shop();
    let saved = septa.request("POST", "/api/cart/c1", &[], r#"["mug","tea"]"#);
    assert_eq!(saved.status, 200, "{saved:?}");
    let read = septa.get("/api/cart/c1");
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.json()["items"], serde_json::json!(["mug", "tea"]));
    assert_eq!(septa.get("/api/cart/none").status, 404);
    // The relay, a public function with no rule to the endpoint, is refused.
    let relayed = septa.get(&format!(
        "/relay/?to={}",
        encode("http://carts.internal/kv/carts/c1")
    ));
    assert_eq!(relayed.json()["status"], 403, "{}", relayed.body);
    assert_eq!(relayed.json()["denied"], true);

    let flows = septa.stop();
    let stored = flows
        .iter()
        .find(|f| f["kind"] == "endpoint" && f["method"] == "PUT")
        .unwrap();
    assert_eq!(stored["src"], "function:storefront");
    assert_eq!(stored["dst"], "endpoint:carts");
    assert_eq!(stored["rule"], "storefront-to-carts");
    assert_eq!(stored["path"], "/kv/carts/c1");
    let refused = flows
        .iter()
        .find(|f| f["kind"] == "endpoint" && f["src"] == "function:relay")
        .unwrap();
    assert_eq!(refused["verdict"], "deny");
}
