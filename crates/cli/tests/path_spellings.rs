//! No spelling of a protected path reaches it without its checks: every variant either lands on
//! the protected route (and meets its authentication), is refused as ambiguous (400), or is a
//! different path that no route admits (404). None reaches the open route with a path a
//! function could read as the protected one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Septa;

const KEY: &str = "ops-key-for-tests";

fn start() -> (Septa, tempfile::TempDir) {
    let hash: String = ring::digest::digest(&ring::digest::SHA256, KEY.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = common::echo_app(
        "spellings",
        &format!(
            r#"[api_keys.ops]
keys = [{{ consumer = "ops", sha256 = "{hash}" }}]
[[route]]
id = "admin"
path = "/admin/..."
function = "echo"
auth = {{ api_key = "ops" }}
[[route]]
id = "public"
path = "/public/..."
function = "echo"
"#
        ),
    );
    (Septa::start(dir.path()), dir)
}

/// `(request target, status without a key)`: 401 is the protected route refusing, so its checks
/// ran; 400 is an ambiguous spelling refused before routing; 404 is a path no route admits.
const SPELLINGS: &[(&str, u16)] = &[
    ("/admin", 401),
    ("/admin/", 401),
    ("/admin/x", 401),
    ("/%61dmin", 401),
    ("/a%64min/x", 401),
    ("/admin/x?next=/public/", 401),
    ("//admin", 400),
    ("/./admin", 400),
    ("/admin/..;/", 400),
    ("/public/../admin", 400),
    ("/public/..;/admin", 400),
    ("/public/.%2e/admin", 400),
    ("/public/%2e%2e/admin", 400),
    ("/public/%2E%2E/admin", 400),
    ("/public/..%2Fadmin", 400),
    ("/public%2F..%2Fadmin", 400),
    ("/public//admin", 400),
    ("/public/%2fadmin", 400),
    ("/public\\..\\admin", 400),
    ("/public/;x/../admin", 400),
    ("/admin%2F", 400),
    ("/admin%00", 400),
    ("/ADMIN", 404),
    ("/Admin/x", 404),
    ("/%41DMIN", 404),
    ("/admin;x", 404),
    ("/admin%20", 404),
    ("/admin.", 404),
    ("/%2561dmin", 404),
];

#[test]
fn no_spelling_of_a_protected_path_skips_its_checks() {
    let (septa, _dir) = start();
    let mut wrong = Vec::new();
    for &(target, expected) in SPELLINGS {
        let r = septa.get(target);
        if r.status != expected {
            wrong.push(format!("{target}: {} (expected {expected})", r.status));
        }
        // With the key, only the spellings that meant the protected route get through.
        let keyed = septa.request("GET", target, &[("x-api-key", KEY)], "");
        let want = if expected == 401 { 200 } else { expected };
        if keyed.status != want {
            wrong.push(format!(
                "{target} with key: {} (expected {want})",
                keyed.status
            ));
        }
        if keyed.status == 200 {
            let seen = keyed.json()["path_with_query"].as_str().unwrap().to_owned();
            assert!(
                seen.starts_with("/admin"),
                "{target} reached the function as {seen}"
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Percent-encoded text that is not a dot stays text: the open route gets exactly what the
    // policy decided on. A path that a router decoding twice would turn into the protected one
    // is refused; one it would not is delivered as it is.
    let r = septa.get("/public/%252e%252e/admin");
    assert_eq!(r.status, 400);
    let r = septa.get("/public/%252e%252e/other");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path_with_query"], "/public/%252e%252e/other");

    let flows = septa.stop();
    let refused = flows
        .iter()
        .find(|f| f["path"] == "/public/..;/admin")
        .unwrap();
    assert_eq!(refused["status"], 400);
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid path: path contains a dot segment"),
        "{refused}"
    );
}

/// An open `/lenient/...` and a guarded `/lenient/keys`, both served by `echo`, whose router
/// under `/lenient/` decodes as often as it can and folds case, `;` parameters, a trailing slash,
/// dot segments, a `.json`-style suffix and Unicode case.
fn start_lenient() -> (Septa, tempfile::TempDir) {
    let hash: String = ring::digest::digest(&ring::digest::SHA256, KEY.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = common::echo_app(
        "lenient",
        &format!(
            r#"[api_keys.ops]
keys = [{{ consumer = "ops", sha256 = "{hash}" }}]
[[route]]
id = "lenient-open"
path = "/lenient/..."
function = "echo"
[[route]]
id = "lenient-keys"
path = "/lenient/keys"
function = "echo"
auth = {{ api_key = "ops" }}
"#
        ),
    );
    (Septa::start(dir.path()), dir)
}

/// `(request target, status without a key, status with it)`: every spelling the lenient router
/// would serve as `/lenient/keys` either meets that route's check (401) or is refused (400).
const LENIENT_SPELLINGS: &[(&str, u16, u16)] = &[
    ("/lenient/keys", 401, 200),
    ("/lenient/ke%79s", 401, 200),
    ("/lenient/KEYS", 400, 400),
    ("/lenient/Keys", 400, 400),
    ("/lenient/%4BEYS", 400, 400),
    ("/lenient/keys/", 400, 400),
    ("/lenient/keys;x", 400, 400),
    ("/lenient/keys;jsessionid=1", 400, 400),
    ("/lenient/keys%3Bx", 400, 400),
    ("/lenient/keys%3bx", 400, 400),
    ("/lenient/%E2%84%AAeys", 400, 400),
    ("/lenient/KEYS/;x", 400, 400),
    ("/lenient/..%3B/lenient/keys", 400, 400),
    ("/lenient/keys.json", 400, 400),
    ("/lenient/%256Beys", 400, 400),
    ("/lenient/x/%252E%252E/keys", 400, 400),
    ("/lenient/keys%252F", 400, 400),
    ("/LENIENT/keys", 404, 404),
    // Open pages stay open in every spelling: nothing more guarded is in the way.
    ("/lenient/menu", 200, 200),
    ("/lenient/MENU/", 200, 200),
    ("/lenient/nothing", 404, 404),
];

#[test]
fn a_lenient_function_never_serves_a_guarded_route_through_an_open_one() {
    let (septa, _dir) = start_lenient();
    let mut wrong = Vec::new();
    for &(target, without, with) in LENIENT_SPELLINGS {
        let r = septa.get(target);
        if r.status != without {
            wrong.push(format!(
                "{target}: {} (expected {without}): {}",
                r.status, r.body
            ));
        }
        assert!(
            !r.body.contains("signing keys"),
            "{target} served the guarded page without a key"
        );
        let keyed = septa.request("GET", target, &[("x-api-key", KEY)], "");
        if keyed.status != with {
            wrong.push(format!(
                "{target} with key: {} (expected {with})",
                keyed.status
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let flows = septa.stop();
    let refused = flows.iter().find(|f| f["path"] == "/lenient/KEYS").unwrap();
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["rule"], "lenient-open");
    assert_eq!(
        refused["reason"],
        "ambiguous path: `/lenient/KEYS` matches route `lenient-open`, but a lenient router reads it as the path of route `lenient-keys`, which guards more"
    );
}
