//! What ECR authorizes for one request of the OCI distribution API (the registry client's
//! HTTP requests, which are not SDK calls): each is an IAM action on the repository it
//! addresses, as ECR's documentation lists them (manifest GET/HEAD → `ecr:BatchGetImage`, blob
//! GET → `ecr:GetDownloadUrlForLayer`, blob HEAD → `ecr:BatchCheckLayerAvailability`, upload
//! POST/PATCH/PUT → `ecr:InitiateLayerUpload` / `ecr:UploadLayerPart` /
//! `ecr:CompleteLayerUpload`, manifest PUT → `ecr:PutImage`; a cross-repository mount also needs
//! `ecr:GetDownloadUrlForLayer` on the repository it mounts from). A request this module does
//! not know is an error, never skipped.

use crate::iam_eval::Request;

/// The requests IAM evaluates for `method` on `url` (`scheme://host/v2/NAME/...?query`);
/// `repository_arn` gives the ARN of a repository name in the registry `url` addresses.
pub fn registry_authorizations(
    method: &str,
    url: &str,
    repository_arn: &dyn Fn(&str) -> String,
) -> Result<Vec<Request>, String> {
    let unknown = || {
        format!(
            "no IAM mapping for registry request {method} {url}: map it in conformance/registry.rs"
        )
    };
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let (_, route) = path.split_once("/v2/").ok_or_else(unknown)?;
    let on = |action: &str, name: &str| Request::new(action, &repository_arn(name));
    if let Some((name, _)) = route.split_once("/blobs/uploads") {
        return match method {
            "POST" => {
                let mut requests = vec![on("ecr:InitiateLayerUpload", name)];
                if let Some(from) = query_value(query, "from") {
                    requests.push(on("ecr:GetDownloadUrlForLayer", &from));
                }
                Ok(requests)
            }
            "PATCH" => Ok(vec![on("ecr:UploadLayerPart", name)]),
            // The final PUT may carry the last (or only) part of the blob.
            "PUT" => Ok(vec![
                on("ecr:UploadLayerPart", name),
                on("ecr:CompleteLayerUpload", name),
            ]),
            _ => Err(unknown()),
        };
    }
    if let Some((name, _)) = route.split_once("/blobs/") {
        return match method {
            "GET" => Ok(vec![on("ecr:GetDownloadUrlForLayer", name)]),
            "HEAD" => Ok(vec![on("ecr:BatchCheckLayerAvailability", name)]),
            _ => Err(unknown()),
        };
    }
    if let Some((name, _)) = route.split_once("/manifests/") {
        return match method {
            "GET" | "HEAD" => Ok(vec![on("ecr:BatchGetImage", name)]),
            "PUT" => Ok(vec![on("ecr:PutImage", name)]),
            _ => Err(unknown()),
        };
    }
    Err(unknown())
}

/// The value of `key` in a URL query, with the `%2F` a repository path is encoded with decoded.
fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.replace("%2F", "/").replace("%2f", "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(name: &str) -> String {
        format!("arn:aws:ecr:eu-west-1:123456789012:repository/{name}")
    }

    fn mapped(method: &str, url: &str) -> Vec<String> {
        registry_authorizations(method, url, &arn)
            .expect("mapped")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn each_registry_request_is_an_ecr_action_on_the_repository_it_addresses() {
        let host = "http://127.0.0.1:5000/v2";
        let digest = "sha256:00";
        let repo = "arn:aws:ecr:eu-west-1:123456789012:repository";
        for (method, url, expected) in [
            (
                "GET",
                format!("{host}/org/app/manifests/{digest}"),
                vec![format!("ecr:BatchGetImage on {repo}/org/app")],
            ),
            (
                "HEAD",
                format!("{host}/app/manifests/v1"),
                vec![format!("ecr:BatchGetImage on {repo}/app")],
            ),
            (
                "PUT",
                format!("{host}/app/manifests/v1"),
                vec![format!("ecr:PutImage on {repo}/app")],
            ),
            (
                "GET",
                format!("{host}/app/blobs/{digest}"),
                vec![format!("ecr:GetDownloadUrlForLayer on {repo}/app")],
            ),
            (
                "HEAD",
                format!("{host}/app/blobs/{digest}"),
                vec![format!("ecr:BatchCheckLayerAvailability on {repo}/app")],
            ),
            (
                "POST",
                format!("{host}/app/blobs/uploads/"),
                vec![format!("ecr:InitiateLayerUpload on {repo}/app")],
            ),
            (
                "POST",
                format!("{host}/app/blobs/uploads/?mount={digest}&from=org%2Fsource"),
                vec![
                    format!("ecr:InitiateLayerUpload on {repo}/app"),
                    format!("ecr:GetDownloadUrlForLayer on {repo}/org/source"),
                ],
            ),
            (
                "PATCH",
                format!("{host}/app/blobs/uploads/u1?_state=x"),
                vec![format!("ecr:UploadLayerPart on {repo}/app")],
            ),
            (
                "PUT",
                format!("{host}/app/blobs/uploads/u1?digest={digest}"),
                vec![
                    format!("ecr:UploadLayerPart on {repo}/app"),
                    format!("ecr:CompleteLayerUpload on {repo}/app"),
                ],
            ),
        ] {
            assert_eq!(mapped(method, &url), expected, "{method} {url}");
        }
    }

    #[test]
    fn an_unknown_registry_request_is_an_error() {
        for (method, url) in [
            ("DELETE", "http://127.0.0.1:5000/v2/app/manifests/sha256:00"),
            ("GET", "http://127.0.0.1:5000/v2/_catalog"),
            ("GET", "http://127.0.0.1:5000/v2/app/tags/list"),
            ("DELETE", "http://127.0.0.1:5000/v2/app/blobs/uploads/u1"),
        ] {
            assert!(
                registry_authorizations(method, url, &arn).is_err(),
                "{method} {url}"
            );
        }
    }
}
