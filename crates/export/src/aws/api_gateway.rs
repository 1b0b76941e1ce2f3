//! Routes: an API Gateway HTTP API on the `$default` stage (so `rawPath` is the path the routes
//! name, as `septa lambda` expects), a JWT authorizer per issuer (issuer, audiences, the route's
//! scopes), and route throttling from rate limits. Routes that take an API key go through a REST
//! API instead, whose usage plan holds one API key per consumer: the key's value is a template
//! parameter (septa keeps only its hash), never a literal.

use std::collections::{BTreeMap, BTreeSet};

use septa_manifest::{AuthMethod, Methods, Name};
use septa_policy::{CompiledRoute, Policy};
use serde_json::{Value, json};

use super::names::{get_att, lambda_id, pascal, reference};
use super::{ExportError, Template};

/// The HTTP API's logical id.
pub(crate) const HTTP_API: &str = "HttpApi";
/// The REST API's logical id (API-key routes).
pub(crate) const REST_API: &str = "RestApi";

/// The HTTP API route keys for a septa path pattern: `{param}` stays, `/a/...` is `/a` and
/// `/a/{proxy+}`.
pub(crate) fn route_paths(pattern: &str) -> Vec<String> {
    match pattern.strip_suffix("/...") {
        Some("") => vec!["/".to_owned(), "/{proxy+}".to_owned()],
        Some(prefix) => vec![prefix.to_owned(), format!("{prefix}/{{proxy+}}")],
        None => vec![pattern.to_owned()],
    }
}

fn methods_of(methods: &Methods) -> Vec<String> {
    match methods {
        Methods::Any => vec!["ANY".to_owned()],
        Methods::Only(list) => list.clone(),
    }
}

fn api_key_set(route: &CompiledRoute) -> Option<&Name> {
    match route.auth.as_ref().map(|a| &a.method) {
        Some(AuthMethod::ApiKey(set)) => Some(set),
        _ => None,
    }
}

/// Every API Gateway resource.
pub(crate) fn resources(policy: &Policy, template: &mut Template) -> Result<(), ExportError> {
    let mut routes: Vec<&CompiledRoute> = policy.routes().collect();
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    if routes.is_empty() {
        return Ok(());
    }
    let application = &policy.manifest().application;
    let (keyed, open): (Vec<&CompiledRoute>, Vec<&CompiledRoute>) =
        routes.into_iter().partition(|r| api_key_set(r).is_some());
    let mut invoked_by: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    if !open.is_empty() {
        http_api(policy, &open, template, &mut invoked_by)?;
    }
    if !keyed.is_empty() {
        rest_api(policy, &keyed, template, &mut invoked_by)?;
    }
    for (function, apis) in invoked_by {
        for api in apis {
            template.resource(
                &format!("{api}Invoke{}", function.trim_start_matches("Function")),
                "AWS::Lambda::Permission",
                json!({
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": get_att(&function, "Arn"),
                    "Principal": "apigateway.amazonaws.com",
                    "SourceArn": { "Fn::Sub": format!("arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/*") },
                }),
                &format!("routes of `{application}` to {function}"),
            )?;
        }
    }
    Ok(())
}

fn http_api(
    policy: &Policy,
    routes: &[&CompiledRoute],
    template: &mut Template,
    invoked_by: &mut BTreeMap<String, BTreeSet<&'static str>>,
) -> Result<(), ExportError> {
    let application = &policy.manifest().application;
    template.resource(
        HTTP_API,
        "AWS::ApiGatewayV2::Api",
        json!({ "Name": application.as_str(), "ProtocolType": "HTTP" }),
        "the routes",
    )?;
    let mut settings = serde_json::Map::new();
    let mut keys = BTreeSet::new();
    for route in routes {
        let spec = &policy.function(route.function).spec;
        let function = lambda_id(&spec.name);
        invoked_by
            .entry(function.clone())
            .or_default()
            .insert(HTTP_API);
        let integration = format!("HttpApiIntegration{}", pascal(spec.name.as_str()));
        if !template.has(&integration) {
            template.resource(
                &integration,
                "AWS::ApiGatewayV2::Integration",
                json!({
                    "ApiId": reference(HTTP_API),
                    "IntegrationType": "AWS_PROXY",
                    "IntegrationUri": get_att(&function, "Arn"),
                    "PayloadFormatVersion": "2.0",
                }),
                &spec.identity(),
            )?;
        }
        let mut auth = json!({});
        if let Some(route_auth) = &route.auth
            && let AuthMethod::Jwt(issuer) = &route_auth.method
        {
            let authorizer = format!("HttpApiAuthorizer{}", pascal(issuer.as_str()));
            if !template.has(&authorizer)
                && let Some(spec) = policy.jwt_issuers().iter().find(|i| &i.name == issuer)
            {
                template.resource(
                    &authorizer,
                    "AWS::ApiGatewayV2::Authorizer",
                    json!({
                        "ApiId": reference(HTTP_API),
                        "AuthorizerType": "JWT",
                        "IdentitySource": ["$request.header.Authorization"],
                        "JwtConfiguration": { "Audience": spec.audiences, "Issuer": spec.issuer },
                        "Name": issuer.as_str(),
                    }),
                    &format!("jwt `{issuer}`"),
                )?;
            }
            auth = json!({
                "AuthorizationScopes": route_auth.scopes,
                "AuthorizationType": "JWT",
                "AuthorizerId": reference(&authorizer),
            });
            if route_auth.scopes.is_empty()
                && let Some(map) = auth.as_object_mut()
            {
                map.remove("AuthorizationScopes");
            }
        }
        for path in route_paths(route.pattern.as_str()) {
            for method in methods_of(&route.methods) {
                let key = format!("{method} {path}");
                if !keys.insert(key.clone()) {
                    continue;
                }
                let mut properties = json!({
                    "ApiId": reference(HTTP_API),
                    "RouteKey": key,
                    "Target": { "Fn::Join": ["/", ["integrations", reference(&integration)]] },
                });
                if let (Some(p), Some(a)) = (properties.as_object_mut(), auth.as_object()) {
                    p.extend(a.clone());
                }
                let suffix = if path.ends_with("{proxy+}") {
                    "Below"
                } else {
                    ""
                };
                template.resource(
                    &format!(
                        "HttpApiRoute{}{}{suffix}",
                        pascal(route.id.as_str()),
                        pascal(&method.to_ascii_lowercase())
                    ),
                    "AWS::ApiGatewayV2::Route",
                    properties,
                    &format!("route `{}`", route.id),
                )?;
                if let Some(limit) = &route.rate_limit {
                    settings.insert(
                        key,
                        json!({ "ThrottlingBurstLimit": limit.burst, "ThrottlingRateLimit": limit.per_second }),
                    );
                }
            }
        }
    }
    let mut stage =
        json!({ "ApiId": reference(HTTP_API), "AutoDeploy": true, "StageName": "$default" });
    if !settings.is_empty() {
        stage["RouteSettings"] = Value::Object(settings);
    }
    if let Some(limit) = &policy.gateway().rate_limit {
        stage["DefaultRouteSettings"] =
            json!({ "ThrottlingBurstLimit": limit.burst, "ThrottlingRateLimit": limit.per_second });
    }
    template.resource(
        "HttpApiStage",
        "AWS::ApiGatewayV2::Stage",
        stage,
        "the routes",
    )?;
    template.output(
        "HttpApiUrl",
        json!({ "Description": "the routes' base URL", "Value": get_att(HTTP_API, "ApiEndpoint") }),
    );
    Ok(())
}

/// API-key routes: a REST API with a resource per path segment, methods that require a key,
/// and a usage plan per key set.
fn rest_api(
    policy: &Policy,
    routes: &[&CompiledRoute],
    template: &mut Template,
    invoked_by: &mut BTreeMap<String, BTreeSet<&'static str>>,
) -> Result<(), ExportError> {
    let application = &policy.manifest().application;
    template.resource(
        REST_API,
        "AWS::ApiGateway::RestApi",
        json!({ "Name": format!("{application}-api-keys") }),
        "the API-key routes",
    )?;
    // Every path prefix gets a resource, numbered in path order.
    let mut prefixes: BTreeSet<Vec<String>> = BTreeSet::new();
    let segments_of = |pattern: &str| -> Vec<String> {
        pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s == "..." {
                    "{proxy+}".to_owned()
                } else {
                    s.to_owned()
                }
            })
            .collect()
    };
    for route in routes {
        let segments = segments_of(route.pattern.as_str());
        for n in 1..=segments.len() {
            prefixes.insert(segments[..n].to_vec());
        }
    }
    let ids: BTreeMap<Vec<String>, String> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), format!("RestResource{i}")))
        .collect();
    let resource_ref = |segments: &[String]| -> Value {
        match ids.get(segments) {
            Some(id) if !segments.is_empty() => reference(id),
            _ => get_att(REST_API, "RootResourceId"),
        }
    };
    for (segments, id) in &ids {
        let (last, parent) = segments
            .split_last()
            .map_or(("", &[][..]), |(l, p)| (l.as_str(), p));
        template.resource(
            id,
            "AWS::ApiGateway::Resource",
            json!({ "ParentId": resource_ref(parent), "PathPart": last, "RestApiId": reference(REST_API) }),
            &format!("path /{}", segments.join("/")),
        )?;
    }
    let mut methods = Vec::new();
    let mut sets: BTreeMap<&Name, Vec<&CompiledRoute>> = BTreeMap::new();
    for route in routes {
        if let Some(set) = api_key_set(route) {
            sets.entry(set).or_default().push(route);
        }
        let spec = &policy.function(route.function).spec;
        let function = lambda_id(&spec.name);
        invoked_by
            .entry(function.clone())
            .or_default()
            .insert(REST_API);
        let segments = segments_of(route.pattern.as_str());
        // `/a/...` is `/a` itself and `/a/{proxy+}` below it.
        let mut places = vec![(segments.clone(), "")];
        if segments.last().is_some_and(|s| s == "{proxy+}") {
            places.push((segments[..segments.len() - 1].to_vec(), ""));
            places[0].1 = "Below";
        }
        for (resource, suffix) in &places {
            for method in methods_of(&route.methods) {
                let id = format!(
                    "RestMethod{}{}{suffix}",
                    pascal(route.id.as_str()),
                    pascal(&method.to_ascii_lowercase())
                );
                template.resource(
                    &id,
                    "AWS::ApiGateway::Method",
                    json!({
                        "ApiKeyRequired": true,
                        "AuthorizationType": "NONE",
                        "HttpMethod": method,
                        "Integration": {
                            "IntegrationHttpMethod": "POST",
                            "Type": "AWS_PROXY",
                            "Uri": { "Fn::Sub": format!("arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{function}.Arn}}/invocations") },
                        },
                        "ResourceId": resource_ref(resource),
                        "RestApiId": reference(REST_API),
                    }),
                    &format!("route `{}`", route.id),
                )?;
                methods.push(id);
            }
        }
    }
    template.resource_value(
        "RestDeployment",
        json!({ "Type": "AWS::ApiGateway::Deployment", "DependsOn": methods, "Properties": { "RestApiId": reference(REST_API) } }),
        "the API-key routes",
    )?;
    template.resource(
        "RestStage",
        "AWS::ApiGateway::Stage",
        json!({ "DeploymentId": reference("RestDeployment"), "RestApiId": reference(REST_API), "StageName": "api" }),
        "the API-key routes",
    )?;
    for (set, routes) in sets {
        let plan = format!("UsagePlan{}", pascal(set.as_str()));
        let mut properties = json!({
            "ApiStages": [{ "ApiId": reference(REST_API), "Stage": reference("RestStage") }],
            "UsagePlanName": format!("{application}-{set}"),
        });
        // The strictest limit of the set's routes, per key: API Gateway's throttle is per key.
        if let Some(limit) = routes
            .iter()
            .filter_map(|r| r.rate_limit.as_ref())
            .min_by_key(|l| (l.per_second, l.burst))
        {
            properties["Throttle"] =
                json!({ "BurstLimit": limit.burst, "RateLimit": limit.per_second });
        }
        template.resource(
            &plan,
            "AWS::ApiGateway::UsagePlan",
            properties,
            &format!("api_keys `{set}`"),
        )?;
        let Some(spec) = policy.api_key_sets().iter().find(|s| &s.name == set) else {
            continue;
        };
        let mut consumers: Vec<&str> = spec.keys.iter().map(|k| k.consumer.as_str()).collect();
        consumers.sort_unstable();
        consumers.dedup();
        for consumer in consumers {
            let tail: String = pascal(set.as_str())
                + &pascal(consumer)
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>();
            let parameter = format!("ApiKeyValue{tail}");
            template.parameter(
                &parameter,
                json!({
                    "Description": format!("the API key of consumer `{consumer}` of `{set}` (septa stores only its SHA-256)"),
                    "MinLength": 20,
                    "NoEcho": true,
                    "Type": "String",
                }),
            );
            let key = format!("ApiKey{tail}");
            template.resource_value(
                &key,
                json!({
                    "Type": "AWS::ApiGateway::ApiKey",
                    "DependsOn": "RestStage",
                    "Properties": { "Enabled": true, "Name": format!("{application}-{set}-{consumer}"), "Value": reference(&parameter) },
                }),
                &format!("consumer `{consumer}` of `{set}`"),
            )?;
            template.resource(
                &format!("UsagePlanKey{tail}"),
                "AWS::ApiGateway::UsagePlanKey",
                json!({ "KeyId": reference(&key), "KeyType": "API_KEY", "UsagePlanId": reference(&plan) }),
                &format!("consumer `{consumer}` of `{set}`"),
            )?;
        }
    }
    Ok(())
}
