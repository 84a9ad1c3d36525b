//! Reading IAM trust policies: who may assume a role. IAM returns documents URL-encoded; moto
//! and hand-written fixtures may not, so both are accepted.

use serde_json::Value;

/// The JSON of a policy document, URL-decoding it first when needed.
pub fn parse_document(raw: &str) -> Option<Value> {
    serde_json::from_str(raw)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(raw)?).ok())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A JSON string or array of strings, as IAM allows either.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn allow_statements(document: &Value) -> Vec<&Value> {
    match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow"))
    .collect()
}

fn allows_action(statement: &Value, action: &str) -> bool {
    strings(statement.get("Action"))
        .iter()
        .any(|a| a == action || a == "sts:*" || a == "*")
}

/// Whether the policy lets `service` (e.g. `ecs-tasks.amazonaws.com`) assume the role.
pub fn trusts_service(document: &Value, service: &str) -> bool {
    allow_statements(document).into_iter().any(|s| {
        allows_action(s, "sts:AssumeRole")
            && strings(s.get("Principal").and_then(|p| p.get("Service")))
                .iter()
                .any(|p| p == service)
    })
}

/// What a role's trust says about GitHub's OIDC provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GithubTrust {
    /// An Allow statement for `sts:AssumeRoleWithWebIdentity` from the GitHub provider exists.
    pub trusted: bool,
    /// Values the `sub` claim is limited to (empty: not limited at all).
    pub subjects: Vec<String>,
    /// Values the `aud` claim is limited to.
    pub audiences: Vec<String>,
}

/// The GitHub OIDC trust of a role, gathered over every statement that grants it.
pub fn github_trust(document: &Value, provider_host: &str) -> GithubTrust {
    let mut trust = GithubTrust::default();
    let suffix = format!("oidc-provider/{provider_host}");
    for statement in allow_statements(document) {
        let federated = strings(statement.get("Principal").and_then(|p| p.get("Federated")));
        if !allows_action(statement, "sts:AssumeRoleWithWebIdentity")
            || !federated.iter().any(|f| f.ends_with(&suffix))
        {
            continue;
        }
        trust.trusted = true;
        let Some(Value::Object(conditions)) = statement.get("Condition") else {
            continue;
        };
        for (operator, keys) in conditions {
            // Negated and IfExists operators do not limit who can assume the role.
            if operator.contains("Not") || operator.ends_with("IfExists") {
                continue;
            }
            trust
                .subjects
                .extend(strings(keys.get(format!("{provider_host}:sub"))));
            trust
                .audiences
                .extend(strings(keys.get(format!("{provider_host}:aud"))));
        }
    }
    trust
}

/// Why a `sub` value lets more than `repository` (`owner/repo`) assume the role, if it does.
pub fn subject_problem(subject: &str, repository: Option<&str>) -> Option<String> {
    let Some(rest) = subject.strip_prefix("repo:") else {
        return Some(format!(
            "`{subject}` does not name a repository (`repo:OWNER/REPO:…`)"
        ));
    };
    let (repo, reference) = rest.split_once(':').unwrap_or((rest, ""));
    if repo.contains(['*', '?']) {
        return Some(format!(
            "`{subject}` lets every matching repository assume the role"
        ));
    }
    if let Some(expected) = repository {
        if !repo.eq_ignore_ascii_case(expected) {
            return Some(format!(
                "`{subject}` names repository `{repo}`, not this one (`{expected}`)"
            ));
        }
    }
    if reference.is_empty() || reference == "*" {
        return Some(format!(
            "`{subject}` lets every branch, tag and pull request of `{repo}` assume the role"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_url_encoded_documents() {
        let doc = parse_document("%7B%22Version%22%3A%222012-10-17%22%7D").expect("decodes");
        assert_eq!(doc["Version"], "2012-10-17");
    }

    #[test]
    fn service_trust() {
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": ["ecs-tasks.amazonaws.com"]}}]});
        assert!(trusts_service(&doc, "ecs-tasks.amazonaws.com"));
        assert!(!trusts_service(&doc, "ec2.amazonaws.com"));
    }

    #[test]
    fn github_subjects_and_wildcards() {
        let doc = json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"},
            "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                          "StringLike": {"token.actions.githubusercontent.com:sub": ["repo:o/r:ref:refs/heads/main"]}}}});
        let trust = github_trust(&doc, GITHUB);
        assert!(trust.trusted);
        assert_eq!(trust.subjects, vec!["repo:o/r:ref:refs/heads/main"]);
        assert_eq!(trust.audiences, vec!["sts.amazonaws.com"]);
        assert_eq!(
            subject_problem("repo:o/r:ref:refs/heads/main", Some("o/r")),
            None
        );
        assert!(subject_problem("repo:o/*", None).is_some());
        assert!(subject_problem("repo:o/r:*", None).is_some());
        assert!(subject_problem("repo:x/y:ref:refs/heads/main", Some("o/r")).is_some());
    }

    const GITHUB: &str = "token.actions.githubusercontent.com";
}
