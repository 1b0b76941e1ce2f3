//! `septa export kubernetes` on the shop and on random manifests: golden files, schema
//! validation with the real validators, the equivalence check with the real
//! network-config-analyzer, and a broken translation the check must catch.
//!
//! The tools come from `.ci/run` (SEPTA_NCA, SEPTA_KUBERNETES_VALIDATE, SEPTA_K8S_MODELS); with
//! SEPTA_REQUIRE_TOOLS=1 a missing tool fails the test, otherwise it is skipped with a note.
//! SEPTA_REGENERATE_GOLDEN=1 rewrites the golden files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use septa_export::kubernetes::{self, Breakage, Export, Nca, Options, Profile};
use septa_export::{Granularity, ReasonCode};
use septa_policy::Policy;
use septa_testkit::random::{Rng, random_manifest};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shop() -> Policy {
    Policy::compile(septa_manifest::load(&repo().join("examples/shop")).unwrap()).unwrap()
}

const COMBINATIONS: [(Profile, Granularity); 4] = [
    (Profile::Istio, Granularity::Cell),
    (Profile::Istio, Granularity::Function),
    (Profile::Cilium, Granularity::Cell),
    (Profile::Cilium, Granularity::Function),
];

fn options(profile: Profile, granularity: Granularity) -> Options {
    Options {
        profile,
        granularity,
        image: "septa:test".to_owned(),
    }
}

/// A tool from `env`, or `None` (after a note) when it is missing and not required.
fn tool(env: &str) -> Option<PathBuf> {
    match std::env::var_os(env).map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        _ if std::env::var_os("SEPTA_REQUIRE_TOOLS").is_some_and(|v| v == "1") => {
            panic!("{env} must name the tool (.ci/run installs it); SEPTA_REQUIRE_TOOLS=1 is set")
        }
        _ => {
            eprintln!("note: skipped: {env} is not set (.ci/run installs the tool)");
            None
        }
    }
}

fn nca() -> Option<Nca> {
    tool("SEPTA_NCA")?;
    Some(Nca::find().unwrap())
}

#[test]
fn shop_exports_match_the_golden_files_byte_for_byte() {
    let policy = shop();
    for (profile, granularity) in COMBINATIONS {
        let export = kubernetes::export(&policy, &options(profile, granularity)).unwrap();
        let files = export.files();
        // Byte-identical across runs.
        let again = kubernetes::export(&policy, &options(profile, granularity)).unwrap();
        assert_eq!(files, again.files());
        let golden = repo().join(format!(
            "crates/export/tests/golden/shop-{profile}-{granularity}"
        ));
        if std::env::var_os("SEPTA_REGENERATE_GOLDEN").is_some() {
            septa_export::write_atomically(&golden, &files).unwrap();
            continue;
        }
        let mut found = BTreeMap::new();
        read_tree(&golden, &golden, &mut found);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            found.keys().collect::<Vec<_>>(),
            "{profile}/{granularity}: the files differ from {} (SEPTA_REGENERATE_GOLDEN=1 rewrites them)",
            golden.display()
        );
        for (name, text) in &files {
            assert_eq!(
                text, &found[name],
                "{profile}/{granularity}: `{name}` differs from the golden file (SEPTA_REGENERATE_GOLDEN=1 rewrites it)"
            );
        }
    }
}

fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Core kinds through kubernetes-validate (strict, Kubernetes 1.33), the others through the
/// @kubernetes-models validators and septa's unknown-field check.
fn validate(export: &Export, what: &str) {
    let (Some(kv), Some(models)) = (tool("SEPTA_KUBERNETES_VALIDATE"), tool("SEPTA_K8S_MODELS"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let core = [
        "Namespace",
        "ServiceAccount",
        "Service",
        "Deployment",
        "StatefulSet",
        "Job",
        "ConfigMap",
        "NetworkPolicy",
        "PersistentVolumeClaim",
    ];
    let (core_objects, crds): (Vec<_>, Vec<_>) = export
        .objects
        .iter()
        .partition(|o| core.contains(&o.kind()));
    let core_file = dir.path().join("core.yaml");
    let values: Vec<_> = core_objects.iter().map(|o| o.value.clone()).collect();
    std::fs::write(&core_file, septa_export::yaml::documents(&values)).unwrap();
    let out = Command::new(&kv)
        .args(["-k", "1.33.0", "--strict", "--quiet"])
        .arg(&core_file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("ERROR"),
        "{what}: kubernetes-validate: {text}"
    );
    assert_eq!(
        text.matches("passed").count(),
        0,
        "--quiet prints failures only: {text}"
    );
    let crd_file = dir.path().join("crds.json");
    let values: Vec<_> = crds.iter().map(|o| o.value.clone()).collect();
    std::fs::write(&crd_file, serde_json::to_string(&values).unwrap()).unwrap();
    let out = Command::new("node")
        .arg(repo().join("scripts/validate-k8s-models.mjs"))
        .arg(&crd_file)
        .env("SEPTA_K8S_MODELS", &models)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: @kubernetes-models: {text}");
    assert!(
        text.contains(&format!("{} objects checked, 0 problems", crds.len())),
        "{what}: {text}"
    );
}

/// The @kubernetes-models validators take unknown fields; septa's check finds one at any depth,
/// as the packages' TypeScript declarations type each place, and leaves free-form values alone.
#[test]
fn an_unknown_field_is_found_at_any_depth() {
    let Some(models) = tool("SEPTA_K8S_MODELS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let objects = serde_json::json!([
        { "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
          "metadata": { "name": "deep", "namespace": "edge" },
          "spec": { "action": "ALLOW", "rules": [{
              "from": [{ "source": { "principals": ["a"], "principalz": ["b"] } }],
              "to": [{ "operation": { "methods": ["GET"], "pathz": ["/a"] } }] }] } },
        { "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
          "metadata": { "name": "deep", "namespace": "edge" },
          "spec": { "endpointSelector": { "matchLabels": { "any": "label" } },
                    "egress": [{ "toPorts": [{ "ports": [{ "port": "443", "protocl": "TCP" }] }] }] } },
        { "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
          "metadata": { "name": "free-form", "namespace": "edge" },
          "spec": { "configPatches": [{ "applyTo": "HTTP_FILTER",
                    "patch": { "operation": "INSERT_BEFORE", "value": { "anything": { "goes": 1 } } } }] } }
    ]);
    let file = dir.path().join("objects.json");
    std::fs::write(&file, objects.to_string()).unwrap();
    let out = Command::new("node")
        .arg(repo().join("scripts/validate-k8s-models.mjs"))
        .arg(&file)
        .env("SEPTA_K8S_MODELS", &models)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    for field in [
        "spec.rules[0].from[0].source.principalz",
        "spec.rules[0].to[0].operation.pathz",
        "spec.egress[0].toPorts[0].ports[0].protocl",
    ] {
        assert!(
            text.contains(&format!("unknown field `{field}`")),
            "{field}: {text}"
        );
    }
    assert!(text.contains("3 objects checked, 3 problems"), "{text}");
}

#[test]
fn every_shop_object_validates() {
    let policy = shop();
    for (profile, granularity) in COMBINATIONS {
        let export = kubernetes::export(&policy, &options(profile, granularity)).unwrap();
        validate(&export, &format!("shop {profile}/{granularity}"));
    }
}

/// Neither profile puts an HTTP condition on the mesh port, whose TLS is the nodes' own and
/// opaque to Istio's sidecar and Cilium's proxy; the Service says it is TLS; and every allow rule
/// with methods or paths into another cell is reported with `l7-in-septa-mtls`.
#[test]
fn the_mesh_port_is_tls_and_admitted_at_l4() {
    let policy = shop();
    for (profile, granularity) in COMBINATIONS {
        let what = format!("{profile}/{granularity}");
        let export = kubernetes::export(&policy, &options(profile, granularity)).unwrap();
        for o in &export.objects {
            let v = &o.value;
            match o.kind() {
                "Service" if v["metadata"]["namespace"] != "septa-system" => {
                    let mesh = v["spec"]["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["port"] == 8443)
                        .unwrap();
                    assert_eq!(mesh["appProtocol"], "tls", "{what}: {v}");
                    assert!(mesh["name"].as_str().unwrap().starts_with("tls-"), "{what}");
                }
                "AuthorizationPolicy" => {
                    for rule in v["spec"]["rules"].as_array().into_iter().flatten() {
                        let op = &rule["to"][0]["operation"];
                        if op["ports"] == serde_json::json!(["8443"]) {
                            assert!(
                                op["methods"].is_null() && op["paths"].is_null(),
                                "{what}: {v}"
                            );
                        }
                    }
                }
                "CiliumNetworkPolicy" => {
                    for rule in v["spec"]["ingress"].as_array().into_iter().flatten() {
                        for to in rule["toPorts"].as_array().into_iter().flatten() {
                            if to["ports"][0]["port"] == "8443" {
                                assert!(to["rules"].is_null(), "{what}: {v}");
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let coded: BTreeMap<String, Vec<String>> = export
            .report
            .differences
            .iter()
            .filter(|d| d.code == Some(ReasonCode::L7InSeptaMtls))
            .map(|d| (format!("{} -> {}", d.from, d.to), d.rules.clone()))
            .collect();
        if granularity == Granularity::Function {
            // storefront may call catalog only with GET on /products paths.
            assert_eq!(
                coded.get("edge/storefront -> catalog/catalog"),
                Some(&vec!["storefront-to-catalog".to_owned()]),
                "{what}: {coded:#?}"
            );
        }
        assert!(!coded.is_empty(), "{what}");
    }
}

/// Every cell's node advertises its cell's Service as its mesh address, so a call from another
/// cell to `NAME.internal` reaches that Service, which selects the cell's pods on the mesh port.
#[test]
fn every_cell_advertises_its_service_as_its_mesh_address() {
    let policy = shop();
    for (profile, granularity) in COMBINATIONS {
        let export = kubernetes::export(&policy, &options(profile, granularity)).unwrap();
        let of_kind = |kind: &'static str| export.objects.iter().filter(move |o| o.kind() == kind);
        let mut deployments = 0;
        for deployment in of_kind("Deployment") {
            deployments += 1;
            let d = &deployment.value;
            let args: Vec<&str> = d["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
            let advertised = after("--mesh-advertise");
            let (host, port) = advertised.rsplit_once(':').unwrap();
            let port: u16 = port.parse().unwrap();
            let (service, namespace) = host
                .strip_suffix(".svc.cluster.local")
                .and_then(|h| h.split_once('.'))
                .unwrap_or_else(|| panic!("`{advertised}` is not a Service's name"));
            assert_eq!(namespace, d["metadata"]["namespace"], "{advertised}");
            assert_eq!(after("--mesh-listen"), format!("0.0.0.0:{port}"));
            let svc = of_kind("Service")
                .find(|s| {
                    s.value["metadata"]["name"] == service
                        && s.value["metadata"]["namespace"] == namespace
                })
                .unwrap_or_else(|| panic!("no Service {namespace}/{service}"));
            assert!(
                svc.value["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == port && p["targetPort"] == port),
                "{profile}/{granularity}: {}",
                svc.value
            );
            let selector = svc.value["spec"]["selector"].as_object().unwrap();
            let labels = &d["spec"]["template"]["metadata"]["labels"];
            for (key, value) in selector {
                assert_eq!(&labels[key], value, "{profile}/{granularity}: {advertised}");
            }
        }
        assert!(deployments > 0);
    }
}

/// Whether `selector` (`matchLabels` and `Exists` expressions) selects `labels`.
fn selects(selector: &serde_json::Value, labels: &serde_json::Value) -> bool {
    let labels_match = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &labels[k] == v);
    let expressions_match = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| e["operator"] == "Exists" && !labels[e["key"].as_str().unwrap()].is_null());
    labels_match && expressions_match
}

/// The control plane's NetworkPolicies admit to NATS's client port the pods of every cell and of
/// the publish Job, and nothing else the export runs; NATS is the only pod the Job may reach
/// but DNS.
#[test]
fn nats_admits_exactly_the_cells_and_the_publish_job() {
    let policy = shop();
    for (profile, granularity) in COMBINATIONS {
        let export = kubernetes::export(&policy, &options(profile, granularity)).unwrap();
        let in_system = |kind: &'static str| {
            export.objects.iter().filter(move |o| {
                o.kind() == kind && o.value["metadata"]["namespace"] == "septa-system"
            })
        };
        let namespace_labels = |ns: &str| {
            export
                .objects
                .iter()
                .find(|o| o.kind() == "Namespace" && o.value["metadata"]["name"] == ns)
                .map(|o| o.value["metadata"]["labels"].clone())
                .unwrap()
        };
        // (namespace, pod labels) of every pod template the export runs.
        let mut pods = Vec::new();
        for o in &export.objects {
            if matches!(o.kind(), "Deployment" | "StatefulSet" | "Job") {
                let ns = o.value["metadata"]["namespace"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let labels = o.value["spec"]["template"]["metadata"]["labels"].clone();
                pods.push((o.kind().to_owned(), ns, labels));
            }
        }
        let nats = in_system("StatefulSet").next().unwrap();
        let nats_labels = &nats.value["spec"]["template"]["metadata"]["labels"];
        let ingress: Vec<_> = in_system("NetworkPolicy")
            .filter(|p| {
                selects(&p.value["spec"]["podSelector"], nats_labels)
                    && p.value["spec"]["ingress"].is_array()
            })
            .collect();
        assert_eq!(ingress.len(), 1, "{profile}/{granularity}");
        let rule = &ingress[0].value["spec"]["ingress"][0];
        assert_eq!(
            rule["ports"],
            serde_json::json!([{ "protocol": "TCP", "port": 4222 }])
        );
        for (kind, ns, labels) in &pods {
            let admitted = rule["from"].as_array().unwrap().iter().any(|peer| {
                let ns_ok = if peer["namespaceSelector"].is_null() {
                    ns == "septa-system"
                } else {
                    selects(&peer["namespaceSelector"], &namespace_labels(ns))
                };
                ns_ok && selects(&peer["podSelector"], labels)
            });
            let expected = kind == "Deployment" || kind == "Job";
            assert_eq!(
                admitted, expected,
                "{profile}/{granularity}: {kind} {ns} {labels}"
            );
        }
        let job = in_system("Job").next().unwrap();
        let job_labels = &job.value["spec"]["template"]["metadata"]["labels"];
        let egress: Vec<_> = in_system("NetworkPolicy")
            .filter(|p| {
                selects(&p.value["spec"]["podSelector"], job_labels)
                    && p.value["spec"]["egress"].is_array()
            })
            .collect();
        assert_eq!(egress.len(), 1);
        let to: Vec<_> = egress[0].value["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(to.len(), 2);
        assert!(selects(&to[0]["to"][0]["podSelector"], nats_labels));
        assert_eq!(
            to[1]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
            "kube-dns"
        );
    }
}

#[test]
fn the_shop_check_finds_only_coded_differences() {
    let Some(nca) = nca() else { return };
    let policy = shop();
    for (profile, granularity) in COMBINATIONS {
        let opts = options(profile, granularity);
        let mut export = kubernetes::export(&policy, &opts).unwrap();
        kubernetes::check::check(&policy, &opts, &mut export, &nca).unwrap();
        let report = &export.report;
        let uncoded: Vec<_> = report.uncoded().collect();
        assert!(uncoded.is_empty(), "{profile}/{granularity}: {uncoded:#?}");
        assert!(report.analyzer.as_deref().unwrap().contains("2.1.0"));
        if (profile, granularity) == (Profile::Istio, Granularity::Function) {
            let pair = |from: &str, to: &str| {
                report
                    .pairs
                    .iter()
                    .find(|p| p.from == from && p.to == to)
                    .unwrap()
            };
            let catalog = pair("edge/storefront", "catalog/catalog");
            assert!(catalog.septa.contains(&"GET /products".to_owned()));
            assert!(!catalog.septa.contains(&"POST /products".to_owned()));
            assert!(catalog.export.contains(&"GET /products".to_owned()));
            let ledger = pair("edge/storefront", "payments/ledger");
            assert!(
                ledger.septa.is_empty() && ledger.export.is_empty(),
                "{ledger:?}"
            );
            // Istio admits storefront's ServiceAccount on catalog's mesh port at L4, since the
            // nodes' TLS hides the method and path from it: said, with its code, for the rule
            // and for each request only catalog's node refuses.
            assert!(catalog.export.contains(&"POST /products".to_owned()));
            let l7: Vec<_> = report
                .differences
                .iter()
                .filter(|d| {
                    d.code == Some(ReasonCode::L7InSeptaMtls)
                        && d.from == "edge/storefront"
                        && d.to == "catalog/catalog"
                })
                .collect();
            // (Examples are the first few in order: DELETE before POST.)
            assert!(
                l7.iter()
                    .any(|d| d.examples.contains(&"DELETE /products".to_owned())),
                "{l7:#?}"
            );
            assert!(
                l7.iter().any(|d| d.rules == ["storefront-to-catalog"]
                    && d.objects
                        .iter()
                        .any(|o| o.starts_with("AuthorizationPolicy catalog/allow-"))),
                "{l7:#?}"
            );
            // No mesh ALLOW claims an HTTP field Istio could not apply to septa's TLS.
            for o in export
                .objects
                .iter()
                .filter(|o| o.kind() == "AuthorizationPolicy")
            {
                let name = o.value["metadata"]["name"].as_str().unwrap();
                if name.starts_with("allow-") && name != "allow-nothing" {
                    let op = &o.value["spec"]["rules"][0]["to"][0]["operation"];
                    assert_eq!(op, &serde_json::json!({ "ports": ["8443"] }), "{name}");
                }
            }
            let md = report.to_markdown();
            assert!(
                md.contains("| edge/storefront | payments/ledger | denied | denied |"),
                "{md}"
            );
        }
    }
}

#[test]
fn a_broken_translation_fails_the_check() {
    let Some(nca) = nca() else { return };
    let policy = shop();
    // Dropped ALLOWs show in Istio's rules; a widened NetworkPolicy shows where it alone carries
    // the L4 decision the analyzer reads (cilium).
    for (breakage, profile) in [
        (Breakage::DropAllow, Profile::Istio),
        (Breakage::WidenSelector, Profile::Cilium),
    ] {
        let opts = options(profile, Granularity::Function);
        let mut export = kubernetes::export_with(&policy, &opts, Some(breakage)).unwrap();
        kubernetes::check::check(&policy, &opts, &mut export, &nca).unwrap();
        let uncoded: Vec<_> = export.report.uncoded().collect();
        assert!(!uncoded.is_empty(), "{breakage:?} was not caught");
        println!("{breakage:?} caught: {uncoded:#?}");
    }
    // The command exits 1 on it, too: the same check on the broken objects is what it runs.
}

#[test]
fn random_manifests_show_no_uncoded_difference() {
    let Some(nca) = nca() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.wasm"), b"").unwrap();
    let cases = 200;
    for seed in 0..cases {
        let mut rng = Rng(seed);
        let text = random_manifest(&mut rng, "f.wasm");
        std::fs::write(dir.path().join("septa.toml"), &text).unwrap();
        let policy = Policy::compile(septa_manifest::load(dir.path()).unwrap()).unwrap();
        let (profile, granularity) = COMBINATIONS[(seed % 4) as usize];
        let opts = options(profile, granularity);
        let mut export = kubernetes::export(&policy, &opts).unwrap();
        kubernetes::check::check(&policy, &opts, &mut export, &nca).unwrap();
        let uncoded: Vec<_> = export.report.uncoded().collect();
        assert!(
            uncoded.is_empty(),
            "seed {seed} ({profile}/{granularity}): {uncoded:#?}\nmanifest:\n{text}"
        );
    }
}

#[test]
fn the_readme_and_the_docs_list_every_reason_code() {
    let table = septa_export::reason_table();
    if std::env::var_os("SEPTA_PRINT_REASON_TABLE").is_some() {
        println!("{table}");
    }
    for file in ["README.md", "docs/export.md"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(
            text.contains(&table),
            "{file} must hold the reason code table exactly as septa_export::reason_table() writes it"
        );
    }
}
