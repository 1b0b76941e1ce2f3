// Validates the Istio, Gateway API and Cilium objects of a `septa export kubernetes` against the
// schemas of @kubernetes-models (npm), and checks that no field of a spec is unknown to septa's
// list of the fields each kind has (those validators accept unknown fields).
//
// usage: node scripts/validate-k8s-models.mjs OBJECTS.json
//   OBJECTS.json: a JSON array of objects. SEPTA_K8S_MODELS: the node_modules folder holding
//   @kubernetes-models/{istio,gateway-api,cilium}. Prints one line per problem; exits 1 on any.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.SEPTA_K8S_MODELS;
if (!modules) {
  console.error("SEPTA_K8S_MODELS must name the node_modules folder with @kubernetes-models");
  process.exit(2);
}

// apiVersion/kind -> [package, module path, the fields its spec may have]
const KINDS = {
  "security.istio.io/v1/AuthorizationPolicy": ["istio", "security.istio.io/v1/AuthorizationPolicy.js", ["selector", "action", "rules", "targetRef", "targetRefs", "provider"]],
  "security.istio.io/v1/PeerAuthentication": ["istio", "security.istio.io/v1/PeerAuthentication.js", ["selector", "mtls", "portLevelMtls"]],
  "security.istio.io/v1/RequestAuthentication": ["istio", "security.istio.io/v1/RequestAuthentication.js", ["selector", "jwtRules", "targetRef", "targetRefs"]],
  "networking.istio.io/v1/ServiceEntry": ["istio", "networking.istio.io/v1/ServiceEntry.js", ["hosts", "addresses", "ports", "location", "resolution", "endpoints", "workloadSelector", "exportTo", "subjectAltNames"]],
  "networking.istio.io/v1/Sidecar": ["istio", "networking.istio.io/v1/Sidecar.js", ["workloadSelector", "ingress", "egress", "outboundTrafficPolicy", "inboundConnectionPool"]],
  "networking.istio.io/v1alpha3/EnvoyFilter": ["istio", "networking.istio.io/v1alpha3/EnvoyFilter.js", ["workloadSelector", "configPatches", "priority", "targetRefs"]],
  "gateway.networking.k8s.io/v1/Gateway": ["gateway-api", "gateway.networking.k8s.io/v1/Gateway.js", ["gatewayClassName", "listeners", "addresses", "infrastructure", "backendTLS"]],
  "gateway.networking.k8s.io/v1/HTTPRoute": ["gateway-api", "gateway.networking.k8s.io/v1/HTTPRoute.js", ["parentRefs", "hostnames", "rules"]],
  "cilium.io/v2/CiliumNetworkPolicy": ["cilium", "cilium.io/v2/CiliumNetworkPolicy.js", ["endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny", "labels", "description", "enableDefaultDeny"]],
};
const TOP = ["apiVersion", "kind", "metadata", "spec"];
const METADATA = ["name", "namespace", "labels", "annotations"];

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let problems = 0;
const problem = (o, text) => {
  problems++;
  console.log(`${o.kind} ${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}: ${text}`);
};
let checked = 0;
for (const o of objects) {
  const key = `${o.apiVersion}/${o.kind}`;
  const entry = KINDS[key];
  if (!entry) continue;
  const [pkg, file, specFields] = entry;
  const url = pathToFileURL(join(modules, "@kubernetes-models", pkg, file)).href;
  const mod = await import(url);
  const Model = mod[o.kind];
  try {
    new Model(o).validate();
  } catch (e) {
    problem(o, `schema: ${e.message}`);
  }
  for (const k of Object.keys(o)) if (!TOP.includes(k)) problem(o, `unknown field \`${k}\``);
  for (const k of Object.keys(o.metadata ?? {})) if (!METADATA.includes(k)) problem(o, `unknown field \`metadata.${k}\``);
  for (const k of Object.keys(o.spec ?? {})) if (!specFields.includes(k)) problem(o, `unknown field \`spec.${k}\``);
  checked++;
}
console.log(`${checked} objects checked, ${problems} problems`);
process.exit(problems ? 1 : 0);
