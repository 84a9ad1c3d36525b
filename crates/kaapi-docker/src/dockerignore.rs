//! `.dockerignore` patterns, as the Docker CLI reads them: paths relative to the context root,
//! `*` and `?` within one path segment, `**` across segments, `!` re-includes, the last
//! matching pattern wins, and a pattern matching a parent directory matches what it contains.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<String>,
    exclude: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|line| {
                let (exclude, body) = match line.strip_prefix('!') {
                    Some(rest) => (false, rest.trim()),
                    None => (true, line),
                };
                let segments: Vec<String> = body
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                (!segments.is_empty()).then_some(Pattern { segments, exclude })
            })
            .collect();
        Self { patterns }
    }

    /// Whether `path` (relative, `/`-separated) is left out of the build context.
    pub fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            let hit = (1..=parts.len()).any(|n| matches(&pattern.segments, &parts[..n]));
            if hit {
                excluded = pattern.exclude;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include something below an excluded directory, in
    /// which case the directory must still be walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| !p.exclude)
    }
}

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                glob_segment(first.as_bytes(), segment.as_bytes()) && matches(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` any run of characters, `?` one character, `\` escapes; within one segment.
fn glob_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_segment(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_segment(rest, &text[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == rest.first() && glob_segment(&rest[1..], &text[1..])
        }
        Some((c, rest)) => text.first() == Some(c) && glob_segment(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_then_exception_keeps_only_the_exception() {
        let ignore = DockerIgnore::parse("# only the binary\n*\n!dist/kaapi-example-backend\n");
        assert!(ignore.excludes("src/main.rs"));
        assert!(ignore.excludes("dist/other"));
        assert!(ignore.excludes("Cargo.toml"));
        assert!(!ignore.excludes("dist/kaapi-example-backend"));
        assert!(ignore.has_exceptions());
    }

    #[test]
    fn patterns_are_anchored_at_the_root() {
        let ignore = DockerIgnore::parse("target\n*.log\n");
        assert!(ignore.excludes("target"));
        assert!(ignore.excludes("target/debug/x"));
        assert!(ignore.excludes("a.log"));
        assert!(!ignore.excludes("sub/a.log"));
        assert!(!ignore.excludes("sub/target"));
    }

    #[test]
    fn double_star_crosses_directories_and_last_match_wins() {
        let ignore = DockerIgnore::parse("**/*.pyc\n!keep/**/x.pyc\n./node_modules/\n");
        assert!(ignore.excludes("a/b/c.pyc"));
        assert!(ignore.excludes("c.pyc"));
        assert!(!ignore.excludes("keep/deep/x.pyc"));
        assert!(ignore.excludes("node_modules/lib/index.js"));
        assert!(!ignore.excludes("src/app.py"));
    }

    #[test]
    fn question_mark_and_escapes() {
        let ignore = DockerIgnore::parse("file?.txt\nliteral\\*\n");
        assert!(ignore.excludes("file1.txt"));
        assert!(!ignore.excludes("file10.txt"));
        assert!(ignore.excludes("literal*"));
        assert!(!ignore.excludes("literalx"));
    }

    #[test]
    fn empty_file_excludes_nothing() {
        assert!(!DockerIgnore::parse("\n# c\n").excludes("anything"));
    }
}
