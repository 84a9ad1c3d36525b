//! AWS's IAM definitions as parliament ships them (`iam_definition.json` in $KAAPI_VENV): for
//! each action its resource types with their ARN patterns, and the condition keys it supports.
//! A request in the conformance tables must fit them, so a table built on a made-up action,
//! ARN or condition key fails instead of proving nothing.

use std::path::PathBuf;

use serde_json::Value;

use crate::iam_eval::{self, Request};

pub struct Definitions {
    services: Value,
}

/// `${Partition}`, `${TagKey}`, … in AWS's patterns stand for any non-empty text.
fn pattern_of(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        out.push('*');
        rest = rest[start..].split_once('}').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out
}

fn matches(template: &str, text: &str, ignore_case: bool) -> bool {
    iam_eval::wildcard_match(&pattern_of(template), text, ignore_case).unwrap_or(false)
}

fn keys_of(entry: &Value) -> Vec<String> {
    iam_eval::strings(entry.get("condition_keys"))
}

impl Definitions {
    pub fn load() -> Self {
        let venv = std::env::var("KAAPI_VENV").unwrap_or_else(|_| "/opt/kaapi-venv".to_owned());
        let lib = PathBuf::from(&venv).join("lib");
        let path = std::fs::read_dir(&lib)
            .unwrap_or_else(|e| {
                panic!(
                    "{} is missing ({e}): run scripts/setup-python.sh or set KAAPI_VENV",
                    lib.display()
                )
            })
            .filter_map(Result::ok)
            .map(|d| {
                d.path()
                    .join("site-packages/parliament/iam_definition.json")
            })
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "parliament's iam_definition.json is not under {}",
                    lib.display()
                )
            });
        let text = std::fs::read_to_string(&path).expect("read iam_definition.json");
        let services = serde_json::from_str(&text).expect("iam_definition.json is JSON");
        Self { services }
    }

    /// Why `request` is not a request AWS can make, if it is not: an unknown action, a
    /// resource ARN none of the action's resource types has, a condition key it never sends.
    pub fn problem(&self, request: &Request) -> Option<String> {
        let Some((prefix, name)) = request.action.split_once(':') else {
            return Some(format!("`{}` is not service:Action", request.action));
        };
        let services: Vec<&Value> = self
            .services
            .as_array()
            .map(|all| all.iter().filter(|s| s["prefix"] == prefix).collect())
            .unwrap_or_default();
        let privilege = services.iter().find_map(|s| {
            s["privileges"]
                .as_array()?
                .iter()
                .find(|p| {
                    p["privilege"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .map(|p| (*s, p))
        });
        let Some((service, privilege)) = privilege else {
            return Some(format!("AWS has no action `{}`", request.action));
        };
        let types = privilege["resource_types"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut allowed_keys: Vec<String> = types
            .iter()
            .filter(|t| t["resource_type"] == "")
            .flat_map(keys_of)
            .collect();
        let typed: Vec<&Value> = types.iter().filter(|t| t["resource_type"] != "").collect();
        if request.resource == "*" {
            if !typed.is_empty() {
                return Some(format!("{} needs a resource ARN, not `*`", request.action));
            }
        } else {
            let resources = service["resources"].as_array().cloned().unwrap_or_default();
            let found = typed.iter().find_map(|t| {
                let kind = t["resource_type"].as_str()?.trim_end_matches('*');
                let resource = resources.iter().find(|r| r["resource"] == kind)?;
                matches(resource["arn"].as_str()?, &request.resource, false).then(|| {
                    keys_of(t)
                        .into_iter()
                        .chain(keys_of(resource))
                        .collect::<Vec<_>>()
                })
            });
            match found {
                Some(keys) => allowed_keys.extend(keys),
                None => {
                    return Some(format!(
                        "`{}` is not the ARN of any resource type of {}",
                        request.resource, request.action
                    ))
                }
            }
        }
        // An OIDC provider's own claims (`HOST:sub`, `HOST:aud`) come with its tokens.
        let provider_host = match &request.principal {
            Some((kind, arn)) if kind == "Federated" => {
                arn.split_once("oidc-provider/").map(|(_, h)| h)
            }
            _ => None,
        };
        request.context.keys().find_map(|key| {
            let supported = allowed_keys.iter().any(|k| matches(k, key, true))
                || provider_host
                    .is_some_and(|h| [format!("{h}:sub"), format!("{h}:aud")].contains(key));
            (!supported).then(|| format!("{} never carries condition key `{key}`", request.action))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_actions_arns_and_keys_are_refused() {
        let d = Definitions::load();
        let real = Request::new(
            "ecs:TagResource",
            "arn:aws:ecs:eu-west-1:1:task-definition/a:1",
        )
        .with("ecs:CreateAction", &["RunTask"])
        .with("aws:TagKeys", &["k"]);
        assert_eq!(d.problem(&real), None);
        let problems = [
            Request::new("ecs:TagTaskDefinition", "*"),
            Request::new("ecs:TagResource", "arn:aws:ecs:eu-west-1:1:taskdef/a:1"),
            Request::new("ecs:TagResource", "*"),
            Request::new("iam:PassRole", "arn:aws:iam::1:role/r").with("iam:PassedTo", &["x"]),
            Request::new("ecs:DescribeTaskDefinition", "*").with("ecs:cluster", &["c"]),
        ];
        for request in problems {
            assert!(d.problem(&request).is_some(), "accepted: {request}");
        }
    }
}
