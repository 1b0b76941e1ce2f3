// Validates the Istio, Gateway API and Cilium objects of a `septa export kubernetes` against the
// schemas of @kubernetes-models (npm), and checks that no field is unknown at any depth (those
// validators accept unknown fields): every key of every object must be a property of the type
// the package's TypeScript declaration (`.d.ts`) gives that place, read with the TypeScript
// compiler's checker; a place typed as a map (an index signature) takes any key.
//
// usage: node scripts/validate-k8s-models.mjs OBJECTS.json
//   OBJECTS.json: a JSON array of objects. SEPTA_K8S_MODELS: the node_modules folder holding
//   @kubernetes-models/{istio,gateway-api,cilium} and typescript. Prints one line per problem;
//   exits 1 on any.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
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

const ts = createRequire(join(modules, "noop.js"))("typescript");

// One program over every kind's declaration, so the checker resolves their imports.
const declarations = Object.values(KINDS).map(([pkg, file]) =>
  join(modules, "@kubernetes-models", pkg, file.replace(/\.js$/, ".d.ts")));
const program = ts.createProgram(declarations, { noEmit: true, skipLibCheck: true });
const checker = program.getTypeChecker();

// The declared type `I<Kind>` of a kind's declaration file.
function kindType(pkg, file, kind) {
  const source = program.getSourceFile(join(modules, "@kubernetes-models", pkg,
                                            file.replace(/\.js$/, ".d.ts")));
  const symbol = checker.getSymbolAtLocation(source);
  const exported = checker.getExportsOfModule(symbol).find((e) => e.name === `I${kind}`);
  return exported && checker.getDeclaredTypeOfSymbol(exported);
}

// The object members of `type` (a union's members, undefined and null left out).
function members(type) {
  const parts = type.isUnion() ? type.types : [type];
  return parts.filter((t) => !(t.flags & (ts.TypeFlags.Undefined | ts.TypeFlags.Null)));
}

// The element type of an array type, or of the array in an intersection (`Array<T> & …`).
function arrayElement(type) {
  if (checker.isArrayType(type)) return checker.getTypeArguments(type)[0];
  if (type.isIntersection()) return type.types.map(arrayElement).find(Boolean);
  return undefined;
}

// Every key of `value` at `path` that the declared `type` does not have, recursively.
function unknownFields(value, type, path, out) {
  if (value === null || typeof value !== "object") return;
  const parts = members(type);
  if (Array.isArray(value)) {
    const elements = parts.map(arrayElement).filter(Boolean);
    for (const element of elements.slice(0, 1)) {
      value.forEach((v, i) => unknownFields(v, element, `${path}[${i}]`, out));
    }
    return;
  }
  const objects = parts.filter((t) => (t.flags & (ts.TypeFlags.Object | ts.TypeFlags.Intersection))
    && !arrayElement(t));
  if (objects.length === 0) return; // `any`, `unknown` or a scalar: nothing to compare
  if (objects.some((t) => checker.getIndexInfosOfType(t).length > 0)) return; // a map
  // `{}` with no property at all is a free-form value (a protobuf Struct such as an
  // EnvoyFilter's patch): whatever it holds is the proxy's to read.
  if (objects.every((t) => checker.getPropertiesOfType(t).length === 0)) return;
  // A union's members may be intersections (a schema's `anyOf`): a key of any member is known.
  for (const [key, v] of Object.entries(value)) {
    const owner = objects.find((t) => t.getProperty(key));
    if (!owner) {
      out.push(`${path}${path ? "." : ""}${key}`);
      continue;
    }
    const property = owner.getProperty(key);
    const declaration = property.valueDeclaration ?? property.declarations?.[0];
    if (!declaration) continue;
    unknownFields(v, checker.getTypeOfSymbolAtLocation(property, declaration),
                  `${path}${path ? "." : ""}${key}`, out);
  }
}

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
  const declared = kindType(pkg, file, o.kind);
  if (!declared) {
    problem(o, `no declared type I${o.kind} in ${pkg}/${file.replace(/\.js$/, ".d.ts")}`);
  } else {
    const unknown = [];
    unknownFields(o, declared, "", unknown);
    for (const field of unknown) problem(o, `unknown field \`${field}\``);
  }
  checked++;
}
console.log(`${checked} objects checked, ${problems} problems`);
process.exit(problems ? 1 : 0);
