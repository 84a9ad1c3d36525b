//! `${NAME}` and `${NAME:-default}` in build arguments, read from the deployer's environment,
//! so one config can build different versions (`APP_VERSION=2 kaapi-deploy deploy local`).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("`${{{0}}}` is not set; export {0}=… or write `${{{0}:-default}}`")]
    Unset(String),
    #[error("unterminated `${{` in `{0}`; close it with `}}`")]
    Unterminated(String),
}

/// Expands `${NAME}` / `${NAME:-default}`; `$$` is a literal `$`; any other `$` is kept.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| InterpolateError::Unterminated(text.to_owned()))?;
            let expression = &body[..end];
            let (name, default) = match expression.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expression, None),
            };
            let value = lookup(name)
                .filter(|v| !v.is_empty())
                .or_else(|| default.map(str::to_owned))
                .ok_or_else(|| InterpolateError::Unset(name.to_owned()))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "APP_VERSION").then(|| "2.0".to_owned())
    }

    #[test]
    fn expands_set_and_default_values() {
        assert_eq!(interpolate("v${APP_VERSION}", env).as_deref(), Ok("v2.0"));
        assert_eq!(interpolate("${MISSING:-dev}", env).as_deref(), Ok("dev"));
        assert_eq!(interpolate("a$$b $c", env).as_deref(), Ok("a$b $c"));
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(
            interpolate("${MISSING}", env),
            Err(InterpolateError::Unset("MISSING".to_owned()))
        );
        assert!(matches!(
            interpolate("${OPEN", env),
            Err(InterpolateError::Unterminated(_))
        ));
    }
}
