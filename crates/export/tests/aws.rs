//! `septa export aws` on the shop and on random manifests: the golden template, cfn-lint on
//! every generated template, the independent check of the written template, and broken
//! translations the check must catch.
//!
//! cfn-lint comes from `.ci/run` (SEPTA_CFN_LINT); with SEPTA_REQUIRE_TOOLS=1 a missing tool
//! fails the test, otherwise the lint is skipped with a note. SEPTA_REGENERATE_GOLDEN=1
//! rewrites the golden files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use septa_export::ReasonCode;
use septa_export::aws::{self, Breakage, Export, Options};
use septa_policy::Policy;
use septa_testkit::random::{Rng, random_manifest};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shop() -> Policy {
    Policy::compile(septa_manifest::load(&repo().join("examples/shop")).unwrap()).unwrap()
}

/// cfn-lint from SEPTA_CFN_LINT, or `None` (after a note) when it is missing and not required.
fn cfn_lint() -> Option<PathBuf> {
    match std::env::var_os("SEPTA_CFN_LINT").map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        _ if std::env::var_os("SEPTA_REQUIRE_TOOLS").is_some_and(|v| v == "1") => {
            panic!(
                "SEPTA_CFN_LINT must name cfn-lint (.ci/run installs it); SEPTA_REQUIRE_TOOLS=1 is set"
            )
        }
        _ => {
            eprintln!("note: skipped: SEPTA_CFN_LINT is not set (.ci/run installs cfn-lint)");
            None
        }
    }
}

/// Runs cfn-lint once over `files`: no error and no warning (the export keeps none, so none
/// needs justifying in the report), and the version it was.
fn lint(cfn_lint: &Path, files: &[PathBuf]) -> String {
    let out = Command::new(cfn_lint)
        .args(["--format", "parseable", "--"])
        .args(files)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "cfn-lint on {} templates: {text}",
        files.len()
    );
    let version = Command::new(cfn_lint).arg("--version").output().unwrap();
    String::from_utf8_lossy(&version.stdout).trim().to_owned()
}

fn resources(export: &Export) -> &serde_json::Map<String, Value> {
    export.template["Resources"].as_object().unwrap()
}

#[test]
fn the_shop_template_matches_the_golden_files_byte_for_byte() {
    let policy = shop();
    let export = aws::export(&policy, &Options::default()).unwrap();
    let files = export.files();
    // Byte-identical across runs.
    assert_eq!(
        files,
        aws::export(&policy, &Options::default()).unwrap().files()
    );
    let golden = repo().join("crates/export/tests/golden/shop-aws");
    if std::env::var_os("SEPTA_REGENERATE_GOLDEN").is_some() {
        septa_export::write_atomically(&golden, &files).unwrap();
        return;
    }
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        found.insert(name, std::fs::read_to_string(&path).unwrap());
    }
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        found.keys().collect::<Vec<_>>(),
        "the files differ from {} (SEPTA_REGENERATE_GOLDEN=1 rewrites them)",
        golden.display()
    );
    for (name, text) in &files {
        assert_eq!(
            text, &found[name],
            "`{name}` differs from the golden file (SEPTA_REGENERATE_GOLDEN=1 rewrites it)"
        );
    }
}

#[test]
fn a_code_bucket_is_named_in_place_of_the_parameter() {
    let policy = shop();
    let export = aws::export(
        &policy,
        &Options {
            code_bucket: Some("septa-code".to_owned()),
        },
    )
    .unwrap();
    assert!(export.template["Parameters"].get("CodeBucket").is_none());
    let code = &resources(&export)["FunctionStorefront"]["Properties"]["Code"];
    assert_eq!(code["S3Bucket"], "septa-code");
    assert_eq!(code["S3Key"], "shop/storefront.zip");
    // The API key is a parameter, never a literal: nothing of the key or its hash is written.
    let text = export.template_yaml();
    assert!(!text.contains("acme-demo-key") && !text.contains("8676d15d94dabdd1"));
    let key = &resources(&export)["ApiKeyPartnersAcme"]["Properties"]["Value"];
    assert_eq!(key["Ref"], "ApiKeyValuePartnersAcme");
    assert_eq!(
        export.template["Parameters"]["ApiKeyValuePartnersAcme"]["NoEcho"],
        true
    );
}

#[test]
fn the_shop_passes_cfn_lint() {
    let Some(cfn_lint) = cfn_lint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let export = aws::export(&shop(), &Options::default()).unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(&file, export.template_yaml()).unwrap();
    let version = lint(&cfn_lint, &[file]);
    assert!(version.contains("1.51.0"), "{version}");
}

#[test]
fn the_shop_check_finds_only_coded_differences() {
    let policy = shop();
    let mut export = aws::export(&policy, &Options::default()).unwrap();
    aws::check::check(&policy, &mut export).unwrap();
    let report = &export.report;
    let uncoded: Vec<_> = report.uncoded().collect();
    assert!(uncoded.is_empty(), "{uncoded:#?}");
    let pair = |from: &str, to: &str| {
        report
            .pairs
            .iter()
            .find(|p| p.from == from && p.to == to)
            .unwrap()
    };
    let catalog = pair("edge/storefront", "catalog/catalog");
    assert!(catalog.septa.contains(&"GET /products".to_owned()));
    assert!(catalog.export.contains(&"GET /products".to_owned()));
    assert!(!catalog.export.contains(&"POST /products".to_owned()));
    let ledger = pair("edge/storefront", "payments/ledger");
    assert!(
        ledger.septa.is_empty() && ledger.export.is_empty(),
        "{ledger:?}"
    );
    let ledger = pair("payments/checkout", "payments/ledger");
    assert!(
        ledger.export.contains(&"POST /entries".to_owned()),
        "{ledger:?}"
    );
    // The one place Lattice's path language is wider is said, with its code.
    assert!(report.differences.iter().any(|d| {
        d.code == Some(ReasonCode::LatticePathWildcard)
            && d.examples.contains(&"GET /products/x1/y2".to_owned())
    }));
    let md = report.to_markdown();
    assert!(
        md.contains("| edge/storefront | payments/ledger | denied | denied |"),
        "{md}"
    );

    // In the template itself: catalog's security group admits storefront's, ledger's does not
    // (it admits the pci-app group only), and ledger's subnet has no route out.
    let r = resources(&export);
    let admitted = |callee: &str| -> Vec<String> {
        r.values()
            .filter(|v| {
                v["Type"] == "AWS::EC2::SecurityGroupIngress"
                    && v["Properties"]["GroupId"]["Fn::GetAtt"][0] == callee
            })
            .map(|v| {
                v["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(admitted("SgCatalog"), ["SgRelay", "SgStorefront"]);
    assert_eq!(admitted("SgLedger"), ["GroupSgPciAppInPayments"]);
    let ledger_fn = &r["FunctionLedger"]["Properties"]["VpcConfig"]["SubnetIds"];
    assert_eq!(ledger_fn[0]["Ref"], "SubnetPaymentsVaultA");
    assert_eq!(
        r["RouteTablePaymentsVaultAssociationA"]["Properties"]["SubnetId"]["Ref"],
        "SubnetPaymentsVaultA"
    );
    let routes_of = |table: &str| {
        r.values()
            .filter(|v| {
                v["Type"] == "AWS::EC2::Route" && v["Properties"]["RouteTableId"]["Ref"] == table
            })
            .count()
    };
    assert_eq!(routes_of("RouteTablePaymentsVault"), 0);
    assert_eq!(routes_of("RouteTableEdgeWeb"), 1);
    assert_eq!(
        routes_of("RouteTablePaymentsApp"),
        1,
        "checkout's egress goes through NAT"
    );
    assert!(r.contains_key("NatGatewayPayments") && !r.contains_key("NatGatewayCatalog"));
    // The ledger's ACL lets nothing out, and the security group's only egress is the
    // placeholder that replaces AWS's default allow-all.
    assert!(!r.keys().any(|k| k.starts_with("AclPaymentsVaultOut")));
    let egress = r["SgLedger"]["Properties"]["SecurityGroupEgress"]
        .as_array()
        .unwrap();
    assert_eq!(egress.len(), 1);
    assert_eq!(egress[0]["CidrIp"], "127.0.0.1/32");
}

#[test]
fn a_broken_translation_fails_the_check() {
    let policy = shop();
    for breakage in [Breakage::WidenIngress, Breakage::DropPathCondition] {
        let mut export = aws::export_with(&policy, &Options::default(), Some(breakage)).unwrap();
        aws::check::check(&policy, &mut export).unwrap();
        let uncoded: Vec<_> = export.report.uncoded().collect();
        assert!(!uncoded.is_empty(), "{breakage:?} was not caught");
        println!("{breakage:?} caught: {uncoded:#?}");
    }
}

#[test]
fn random_manifests_pass_cfn_lint_and_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("f.wasm"), b"").unwrap();
    let mut templates = Vec::new();
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let text = random_manifest(&mut rng, "f.wasm");
        std::fs::write(app.join("septa.toml"), &text).unwrap();
        let policy = Policy::compile(septa_manifest::load(&app).unwrap()).unwrap();
        let mut export = aws::export(&policy, &Options::default()).unwrap();
        aws::check::check(&policy, &mut export).unwrap();
        let uncoded: Vec<_> = export.report.uncoded().collect();
        assert!(
            uncoded.is_empty(),
            "seed {seed}: {uncoded:#?}\nmanifest:\n{text}"
        );
        let file = dir.path().join(format!("random-{seed}.yaml"));
        std::fs::write(&file, export.template_yaml()).unwrap();
        templates.push(file);
    }
    // One cfn-lint run over all of them: its start-up is most of its time.
    if let Some(cfn_lint) = cfn_lint() {
        lint(&cfn_lint, &templates);
    }
}

/// Everything the shop and the random manifests leave out: private subnets with egress (NAT),
/// egress to addresses, to names and to IPv6, a relaxed ceiling, Redis and PostgreSQL in the
/// caller's segment and in another, a JWT route with claims and sources, an API-key route with a
/// wildcard, a group rule, audit mode.
const EVERY_FEATURE: &str = r#"
septa_manifest_version = 1
[application]
name = "wide"
[ceiling]
relax = ["10.20.0.0/16"]
[segment.edge]
subnets = { web = "public" }
[segment.app]
subnets = { svc = "private", db = "isolated" }
[segment.data]
subnets = { store = "isolated" }
[group.workers]
[function.web]
source = "f.wasm"
placement = "edge/web"
[function.api]
source = "f.wasm"
placement = "app/svc"
groups = ["workers"]
limits = { memory_mb = 256, timeout_ms = 30000, max_concurrency = 8 }
[function.batch]
source = "f.wasm"
placement = "app/svc"
groups = ["workers"]
mode = "audit"
[function.report]
source = "f.wasm"
placement = "app/db"
[endpoint.db]
placement = "app/db"
backend = "postgres"
url_env = "DB_URL"
[endpoint.cache]
placement = "data/store"
backend = "redis"
url_env = "CACHE_URL"
[jwt.main]
issuer = "https://auth.example"
audiences = ["wide"]
algorithms = ["ES256"]
jwks_url = "https://auth.example/.well-known/jwks.json"
[[route]]
id = "home"
path = "/..."
methods = ["GET"]
function = "web"
[[route]]
id = "orders"
path = "/orders/{id}"
function = "web"
auth = { jwt = "main", scopes = ["orders:read"], claims = { tenant = ["acme"] } }
sources = ["198.51.100.0/24"]
rate_limit = { key = "principal", per_second = 5, burst = 10 }
[api_keys.partners]
keys = [{ consumer = "acme", sha256 = "8676d15d94dabdd1283e6c407e2bb08a7b5c13b4e3667d4795c17172e080a3d4" }]
[[route]]
id = "partner"
path = "/partner/..."
methods = ["GET"]
function = "web"
auth = { api_key = "partners" }
[[allow]]
id = "web-to-api"
from = "function:web"
to = "function:api"
methods = ["GET"]
paths = ["/items/{id}", "/items/..."]
[[allow]]
id = "workers-to-report"
from = "group:workers"
to = "function:report"
methods = ["POST"]
paths = ["/runs"]
[[allow]]
id = "api-to-db"
from = "function:api"
to = "endpoint:db"
paths = ["/kv/orders/..."]
[[allow]]
id = "web-to-cache"
from = "function:web"
to = "endpoint:cache"
[[egress]]
id = "api-out"
from = "function:api"
to = ["https://api.example.com", "https://93.184.216.0/24:443", "tcp://10.20.0.5:5432", "https://[2606:4700::1111]:443"]
[[egress]]
id = "web-out"
from = "function:web"
to = ["https://*.example.org"]
"#;

#[test]
fn a_manifest_using_every_feature_passes_cfn_lint_and_the_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.wasm"), b"").unwrap();
    std::fs::write(dir.path().join("septa.toml"), EVERY_FEATURE).unwrap();
    let policy = Policy::compile(septa_manifest::load(dir.path()).unwrap()).unwrap();
    let mut export = aws::export(&policy, &Options::default()).unwrap();
    aws::check::check(&policy, &mut export).unwrap();
    let report = &export.report;
    let uncoded: Vec<_> = report.uncoded().collect();
    assert!(uncoded.is_empty(), "{uncoded:#?}");
    let codes: std::collections::BTreeSet<ReasonCode> =
        report.differences.iter().filter_map(|d| d.code).collect();
    for code in [
        ReasonCode::LatticePathWildcard,
        ReasonCode::StoreWithoutL7,
        ReasonCode::StoreAcrossVpcs,
        ReasonCode::FirewallDomains,
        ReasonCode::AclCeiling,
        ReasonCode::Ipv4Only,
        ReasonCode::ApiGatewayThrottling,
        ReasonCode::RouteChecksInLambda,
        ReasonCode::PublicSubnetEgress,
        ReasonCode::AuditMode,
    ] {
        assert!(codes.contains(&code), "{code} missing: {codes:?}");
    }
    let pair = |from: &str, to: &str| {
        report
            .pairs
            .iter()
            .find(|p| p.from == from && p.to == to)
            .unwrap()
    };
    // The store in the caller's VPC is reached on any request; the one across VPCs is not.
    assert!(
        pair("app/api", "app/db")
            .export
            .contains(&"DELETE /".to_owned())
    );
    assert!(pair("edge/web", "data/cache").export.is_empty());
    // The group rule admits both members; batch is in audit mode, which septa lets through.
    assert!(
        pair("app/api", "app/report")
            .export
            .contains(&"POST /runs".to_owned())
    );
    assert!(
        pair("app/batch", "app/report")
            .export
            .contains(&"POST /runs".to_owned())
    );
    let r = resources(&export);
    assert!(r.contains_key("NatGatewayApp") && r.contains_key("RouteTableAppSvcDefault"));
    assert!(
        !r.contains_key("RouteTableAppDbDefault") && !r.contains_key("RouteTableDataStoreDefault")
    );
    assert_eq!(r["StoreDb"]["Type"], "AWS::RDS::DBInstance");
    assert_eq!(r["StoreCache"]["Type"], "AWS::ElastiCache::CacheCluster");
    let targets = &r["EgressDomainRuleGroup"]["Properties"]["RuleGroup"]["RulesSource"]["RulesSourceList"]
        ["Targets"];
    assert_eq!(
        targets,
        &serde_json::json!([".example.org", "api.example.com"])
    );
    if let Some(cfn_lint) = cfn_lint() {
        let file = dir.path().join("wide.yaml");
        std::fs::write(&file, export.template_yaml()).unwrap();
        lint(&cfn_lint, &[file]);
    }
}

#[test]
fn names_that_make_one_logical_id_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.wasm"), b"").unwrap();
    std::fs::write(
        dir.path().join("septa.toml"),
        "septa_manifest_version = 1\n[application]\nname = \"a\"\n[segment.edge]\nsubnets = { web = \"public\" }\n[function.a1]\nsource = \"f.wasm\"\nplacement = \"edge/web\"\n[function.a-1]\nsource = \"f.wasm\"\nplacement = \"edge/web\"\n",
    )
    .unwrap();
    let policy = Policy::compile(septa_manifest::load(dir.path()).unwrap()).unwrap();
    let error = aws::export(&policy, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`function:a-1`") && error.contains("`function:a1`"),
        "{error}"
    );
    assert!(error.contains("logical id `RoleA1`"), "{error}");
}

#[test]
fn a_subnet_needing_more_acl_entries_than_aws_allows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.wasm"), b"").unwrap();
    let targets: Vec<String> = (1..=21)
        // 21 networks, one of them (10.10.10.0/24) inside the ceiling, so a deny precedes it.
        .map(|i| format!("\"https://{i}.{i}.{i}.0/24:443\""))
        .collect();
    std::fs::write(
        dir.path().join("septa.toml"),
        format!("septa_manifest_version = 1\n[application]\nname = \"a\"\n[segment.app]\nsubnets = {{ svc = \"private\" }}\n[function.f]\nsource = \"f.wasm\"\nplacement = \"app/svc\"\n[[egress]]\nid = \"many\"\nfrom = \"function:f\"\nto = [{}]\n", targets.join(", ")),
    )
    .unwrap();
    let policy = Policy::compile(septa_manifest::load(dir.path()).unwrap()).unwrap();
    let error = aws::export(&policy, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("subnet `app/svc` needs 22 outbound network ACL entries"),
        "{error}"
    );
}
