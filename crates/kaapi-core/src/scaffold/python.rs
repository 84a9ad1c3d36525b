//! Python dependency names from `pyproject.toml` and `requirements*.txt`, to tell whether a
//! backend uses Celery and Flower.

use std::collections::BTreeSet;

/// Normalised (lowercase, `_` → `-`) names of the runtime dependencies.
pub fn dependencies(pyproject: Option<&str>, requirements: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Some(text) = pyproject {
        if let Ok(doc) = text.parse::<toml::Table>() {
            let project_deps = doc
                .get("project")
                .and_then(|p| p.get("dependencies"))
                .and_then(|d| d.as_array());
            for spec in project_deps
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                names.extend(requirement_name(spec));
            }
            let poetry_deps = doc
                .get("tool")
                .and_then(|t| t.get("poetry"))
                .and_then(|p| p.get("dependencies"))
                .and_then(|d| d.as_table());
            for name in poetry_deps.into_iter().flat_map(|t| t.keys()) {
                names.extend(requirement_name(name));
            }
        }
    }
    for text in requirements {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.starts_with('-') {
                continue;
            }
            names.extend(requirement_name(line));
        }
    }
    names
}

/// `celery[redis]>=5.3,<6` → `celery`.
fn requirement_name(spec: &str) -> Option<String> {
    let name: String = spec
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!name.is_empty()).then(|| name.to_ascii_lowercase().replace(['_', '.'], "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pyproject_poetry_and_requirements() {
        let pyproject = "[project]\ndependencies = [\"celery>=5.3.0,<6.0.0\", \"Flower>=2\", \"fastapi[standard]<1\"]\n[tool.poetry.dependencies]\nredis_py = \"*\"\n";
        let deps = dependencies(
            Some(pyproject),
            &["# c\n-r base.txt\nalembic==1.13 # pinned\n"],
        );
        for name in ["celery", "flower", "fastapi", "redis-py", "alembic"] {
            assert!(deps.contains(name), "{name} in {deps:?}");
        }
        assert!(!deps.contains("base-txt"));
    }

    #[test]
    fn tolerates_unparsable_files() {
        assert!(dependencies(Some("not = [toml"), &[]).is_empty());
    }
}
