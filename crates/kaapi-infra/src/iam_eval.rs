//! A small IAM policy evaluator: decides whether a policy document allows one request the way
//! AWS does for a single identity or trust policy (explicit deny wins, otherwise an allow is
//! needed, default deny). It covers what this project's policies use: Action/NotAction,
//! Resource/NotResource and Principal with `*`/`?` wildcards, and the String and Arn condition
//! operators with their `Not`, `IfExists`, `ForAnyValue:` and `ForAllValues:` forms.

use std::collections::BTreeMap;

use regex_lite::Regex;
use serde_json::Value;

/// One request as AWS authorizes it: the action, the resource ARN (`*` for actions without a
/// resource), the caller for trust policies, and the condition keys AWS sends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: String,
    pub resource: String,
    /// `("Federated", provider ARN)` or `("Service", host)` when evaluating a trust policy.
    pub principal: Option<(String, String)>,
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Self {
        Self {
            action: action.to_owned(),
            resource: resource.to_owned(),
            principal: None,
            context: BTreeMap::new(),
        }
    }

    /// Adds a condition key with its values (several values: a multivalued key like `aws:TagKeys`).
    pub fn with(mut self, key: &str, values: &[&str]) -> Self {
        self.context.insert(
            key.to_owned(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        );
        self
    }

    pub fn principal(mut self, kind: &str, value: &str) -> Self {
        self.principal = Some((kind.to_owned(), value.to_owned()));
        self
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        for (key, values) in &self.context {
            write!(f, " [{key}={}]", values.join(","))?;
        }
        Ok(())
    }
}

/// The outcome, naming the statement that decided it (its Sid, or `#N` by position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        statement: String,
    },
    Denied {
        statement: String,
    },
    /// No statement allows it; `closest` is the Allow statement for the action that matched
    /// the most of resource, principal and conditions.
    NotAllowed {
        closest: Option<String>,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvalError {
    #[error("condition operator `{0}` is not supported by this evaluator")]
    UnsupportedOperator(String),
    #[error("statement {0} has no Effect Allow or Deny")]
    BadEffect(String),
    #[error("wildcard `{0}` cannot be matched: {1}")]
    BadPattern(String, String),
}

/// A JSON string or array of strings, as IAM allows either.
pub fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `text` matches the IAM wildcard `pattern` (`*` any run, `?` one character).
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> Result<bool, EvalError> {
    let mut expression = String::from(if ignore_case { "(?is)^" } else { "(?s)^" });
    for c in pattern.chars() {
        match c {
            '*' => expression.push_str(".*"),
            '?' => expression.push('.'),
            other => expression.push_str(&regex_lite::escape(&other.to_string())),
        }
    }
    expression.push('$');
    let regex = Regex::new(&expression)
        .map_err(|e| EvalError::BadPattern(pattern.to_owned(), e.to_string()))?;
    Ok(regex.is_match(text))
}

fn any_match(patterns: &[String], text: &str, ignore_case: bool) -> Result<bool, EvalError> {
    for pattern in patterns {
        if wildcard_match(pattern, text, ignore_case)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn statements(document: &Value) -> Vec<&Value> {
    match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    }
}

fn label(statement: &Value, index: usize) -> String {
    statement
        .get("Sid")
        .and_then(Value::as_str)
        .map_or_else(|| format!("#{index}"), str::to_owned)
}

/// `Action` matches, or `NotAction` does not (action names are case-insensitive).
fn action_matches(statement: &Value, action: &str) -> Result<bool, EvalError> {
    if let Some(not) = statement.get("NotAction") {
        return Ok(!any_match(&strings(Some(not)), action, true)?);
    }
    any_match(&strings(statement.get("Action")), action, true)
}

/// Trust policies have no Resource: they apply to the role they are attached to.
fn resource_matches(statement: &Value, resource: &str) -> Result<bool, EvalError> {
    if let Some(not) = statement.get("NotResource") {
        return Ok(!any_match(&strings(Some(not)), resource, false)?);
    }
    match statement.get("Resource") {
        Some(r) => any_match(&strings(Some(r)), resource, false),
        None => Ok(true),
    }
}

fn principal_matches(
    statement: &Value,
    principal: Option<&(String, String)>,
) -> Result<bool, EvalError> {
    match (statement.get("Principal"), principal) {
        (None, None) => Ok(true),
        (Some(Value::String(s)), Some(_)) => Ok(s == "*"),
        (Some(p), Some((kind, value))) => any_match(&strings(p.get(kind)), value, false),
        _ => Ok(false),
    }
}

/// One condition operator, split into its parts.
struct Operator<'a> {
    base: &'a str,
    negated: bool,
    if_exists: bool,
    set: Option<&'a str>,
}

fn parse_operator(name: &str) -> Result<Operator<'_>, EvalError> {
    let (set, rest) = match name.split_once(':') {
        Some((set @ ("ForAnyValue" | "ForAllValues"), rest)) => (Some(set), rest),
        Some(_) => return Err(EvalError::UnsupportedOperator(name.to_owned())),
        None => (None, name),
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let supported = [
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "ArnEquals",
        "ArnNotEquals",
        "ArnLike",
        "ArnNotLike",
    ];
    if !supported.contains(&base) {
        return Err(EvalError::UnsupportedOperator(name.to_owned()));
    }
    Ok(Operator {
        base,
        negated: base.contains("Not"),
        if_exists,
        set,
    })
}

/// Whether one request value matches one policy value, before negation.
fn value_matches(op: &Operator<'_>, pattern: &str, value: &str) -> Result<bool, EvalError> {
    Ok(match op.base {
        "StringEquals" | "StringNotEquals" => pattern == value,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
            pattern.eq_ignore_ascii_case(value)
        }
        // ARN operators match wildcards too.
        _ => wildcard_match(pattern, value, false)?,
    })
}

fn matches_any(op: &Operator<'_>, patterns: &[String], value: &str) -> Result<bool, EvalError> {
    for pattern in patterns {
        if value_matches(op, pattern, value)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One key of one operator: AWS's rules for absent keys and multivalued keys.
fn key_holds(
    op: &Operator<'_>,
    patterns: &[String],
    actual: Option<&Vec<String>>,
) -> Result<bool, EvalError> {
    let Some(values) = actual.filter(|v| !v.is_empty()) else {
        // An absent key: ForAllValues holds vacuously, negated operators hold, the rest fail.
        return Ok(op.if_exists
            || op.set == Some("ForAllValues")
            || (op.negated && op.set.is_none()));
    };
    let mut hits = Vec::with_capacity(values.len());
    for value in values {
        hits.push(matches_any(op, patterns, value)?);
    }
    Ok(match (op.set, op.negated) {
        (Some("ForAllValues"), false) => hits.iter().all(|h| *h),
        (Some("ForAllValues"), true) => hits.iter().all(|h| !*h),
        (_, false) => hits.iter().any(|h| *h),
        (Some(_), true) => hits.iter().any(|h| !*h),
        (None, true) => hits.iter().all(|h| !*h),
    })
}

fn conditions_hold(statement: &Value, request: &Request) -> Result<bool, EvalError> {
    let Some(Value::Object(conditions)) = statement.get("Condition") else {
        return Ok(true);
    };
    for (operator, keys) in conditions {
        let op = parse_operator(operator)?;
        let Value::Object(keys) = keys else {
            return Err(EvalError::UnsupportedOperator(operator.clone()));
        };
        for (key, expected) in keys {
            // Condition key names are case-insensitive.
            let actual = request
                .context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v);
            if !key_holds(&op, &strings(Some(expected)), actual)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Decides `request` against `document`.
pub fn evaluate(document: &Value, request: &Request) -> Result<Decision, EvalError> {
    let mut allowed = None;
    let mut closest: Option<(usize, String)> = None;
    for (index, statement) in statements(document).into_iter().enumerate() {
        let name = label(statement, index);
        let effect = statement.get("Effect").and_then(Value::as_str);
        if !matches!(effect, Some("Allow" | "Deny")) {
            return Err(EvalError::BadEffect(name));
        }
        if !action_matches(statement, &request.action)? {
            continue;
        }
        let parts = [
            resource_matches(statement, &request.resource)?,
            principal_matches(statement, request.principal.as_ref())?,
            conditions_hold(statement, request)?,
        ];
        if parts.iter().all(|p| *p) {
            if effect == Some("Deny") {
                return Ok(Decision::Denied { statement: name });
            }
            allowed.get_or_insert(name);
        } else if effect == Some("Allow") {
            let score = parts.iter().filter(|p| **p).count();
            if closest.as_ref().is_none_or(|(best, _)| score > *best) {
                closest = Some((score, name));
            }
        }
    }
    Ok(match allowed {
        Some(statement) => Decision::Allowed { statement },
        None => Decision::NotAllowed {
            closest: closest.map(|(_, name)| name),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Tag", "Effect": "Allow", "Action": "ecs:TagResource",
             "Resource": "arn:aws:ecs:r:1:task-definition/app-web:*",
             "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["kaapi:outcome", "kaapi:detail"]}}},
            {"Sid": "TagOnCreate", "Effect": "Allow", "Action": ["ecs:Tag*"],
             "Resource": "*",
             "Condition": {"StringEquals": {"ecs:CreateAction": ["RegisterTaskDefinition"]}}},
            {"Sid": "NoProd", "Effect": "Deny", "NotAction": "ecs:Describe*",
             "Resource": "arn:aws:ecs:r:1:task-definition/app-prod:*"},
            {"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole",
             "Resource": "arn:aws:iam::1:role/app-*",
             "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}},
            {"Sid": "Cluster", "Effect": "Allow", "Action": "ecs:RunTask", "Resource": "*",
             "Condition": {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:r:1:cluster/c"}}},
        ]})
    }

    fn decide(request: Request) -> Decision {
        evaluate(&policy(), &request).expect("the test policy evaluates")
    }

    #[test]
    fn allows_by_action_resource_and_condition() {
        let tag = Request::new(
            "ecs:TagResource",
            "arn:aws:ecs:r:1:task-definition/app-web:7",
        )
        .with("aws:TagKeys", &["kaapi:outcome"]);
        assert_eq!(
            decide(tag.clone()),
            Decision::Allowed {
                statement: "Tag".into()
            }
        );
        // A tag key outside the list fails ForAllValues; nothing else allows it.
        let other = tag.with("aws:TagKeys", &["kaapi:outcome", "owner"]);
        assert_eq!(
            decide(other),
            Decision::NotAllowed {
                closest: Some("Tag".into())
            }
        );
        // Action names are case-insensitive, resources are not.
        let lower = Request::new(
            "ECS:tagresource",
            "arn:aws:ecs:r:1:task-definition/APP-web:7",
        )
        .with("aws:TagKeys", &["kaapi:outcome"]);
        assert!(!decide(lower).is_allowed());
    }

    #[test]
    fn a_condition_key_that_is_absent_fails_string_equals() {
        let standalone = Request::new("ecs:TagResource", "arn:aws:ecs:r:1:task-definition/other:1");
        assert!(matches!(
            decide(standalone.clone()),
            Decision::NotAllowed { closest: Some(_) }
        ));
        let on_create = standalone.with("ecs:CreateAction", &["RegisterTaskDefinition"]);
        assert_eq!(
            decide(on_create),
            Decision::Allowed {
                statement: "TagOnCreate".into()
            }
        );
    }

    #[test]
    fn explicit_deny_wins_and_not_action_excludes() {
        let tag = Request::new(
            "ecs:TagResource",
            "arn:aws:ecs:r:1:task-definition/app-prod:1",
        )
        .with("ecs:CreateAction", &["RegisterTaskDefinition"]);
        assert_eq!(
            decide(tag),
            Decision::Denied {
                statement: "NoProd".into()
            }
        );
        let describe = Request::new(
            "ecs:DescribeTaskDefinition",
            "arn:aws:ecs:r:1:task-definition/app-prod:1",
        );
        assert_eq!(decide(describe), Decision::NotAllowed { closest: None });
    }

    #[test]
    fn pass_role_and_arn_conditions() {
        let pass = Request::new("iam:PassRole", "arn:aws:iam::1:role/app-exec")
            .with("iam:PassedToService", &["ecs-tasks.amazonaws.com"]);
        assert!(decide(pass).is_allowed());
        let default_role = Request::new("iam:PassRole", "arn:aws:iam::1:role/ecsTaskExecutionRole")
            .with("iam:PassedToService", &["ecs-tasks.amazonaws.com"]);
        assert_eq!(
            decide(default_role),
            Decision::NotAllowed {
                closest: Some("Pass".into())
            }
        );
        let run = Request::new("ecs:RunTask", "arn:aws:ecs:r:1:task-definition/x:1");
        assert!(decide(
            run.clone()
                .with("ecs:cluster", &["arn:aws:ecs:r:1:cluster/c"])
        )
        .is_allowed());
        assert!(!decide(run.with("ecs:cluster", &["arn:aws:ecs:r:1:cluster/d"])).is_allowed());
    }

    #[test]
    fn trust_policies_match_the_principal_and_string_like() {
        let trust = json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/host"},
            "Condition": {"StringLike": {"host:sub": ["repo:o/r:ref:refs/tags/v*"]}}}});
        let request = Request::new(
            "sts:AssumeRoleWithWebIdentity",
            "arn:aws:iam::1:role/deploy",
        )
        .principal("Federated", "arn:aws:iam::1:oidc-provider/host");
        let tag = request
            .clone()
            .with("host:sub", &["repo:o/r:ref:refs/tags/v1.2.0"]);
        assert!(evaluate(&trust, &tag).expect("evaluates").is_allowed());
        let branch = request
            .clone()
            .with("host:sub", &["repo:o/r:ref:refs/heads/main"]);
        assert!(!evaluate(&trust, &branch).expect("evaluates").is_allowed());
        let other_provider = tag.principal("Federated", "arn:aws:iam::1:oidc-provider/other");
        assert!(!evaluate(&trust, &other_provider)
            .expect("evaluates")
            .is_allowed());
    }

    #[test]
    fn negated_if_exists_and_unsupported_operators() {
        let doc = |op: &str| {
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {op: {"k": "v"}}}]})
        };
        let absent = Request::new("s:A", "*");
        let present = Request::new("s:A", "*").with("k", &["v"]);
        let decide = |op: &str, r: &Request| evaluate(&doc(op), r).expect("supported").is_allowed();
        assert!(decide("StringNotEquals", &absent));
        assert!(!decide("StringNotEquals", &present));
        assert!(decide("StringEqualsIfExists", &absent));
        assert!(!decide("ForAnyValue:StringEquals", &absent));
        assert!(decide("ForAnyValue:StringLike", &present));
        assert_eq!(
            evaluate(&doc("NumericLessThan"), &present),
            Err(EvalError::UnsupportedOperator("NumericLessThan".into()))
        );
    }
}
