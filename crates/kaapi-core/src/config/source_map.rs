//! Maps dotted key paths to lines of the TOML source and back, so that errors found after
//! deserialising can still point at the line a user has to change.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub struct SourceMap<'a> {
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> SourceMap<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// Line of a dotted key path (`services.backend.port`), or of its nearest existing parent.
    pub fn line_of_key(&self, path: &str) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut table = root.get_ref();
        let mut found: Option<Range<usize>> = None;
        for part in path.split('.') {
            let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == part) else {
                break;
            };
            found = Some(key.span());
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        found.map(|span| self.line_of(span.start))
    }

    /// The dotted path of the deepest key whose entry contains `offset`. Header tables
    /// (`[services.backend]`) span only their header, so every branch is searched.
    pub fn key_at(&self, offset: usize) -> Option<String> {
        let root = self.root.as_ref()?;
        let mut path = Vec::new();
        find_key(root.get_ref(), offset, &mut path).then(|| path.join("."))
    }
}

fn find_key(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if let DeValue::Table(inner) = value.get_ref() {
            if find_key(inner, offset, path) {
                return true;
            }
        }
        if key.span().contains(&offset) || value.span().contains(&offset) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "app = \"kaapi\"\n\n[services.backend]\nport = 8000\nreplicas = 2\n";

    #[test]
    fn finds_lines_of_nested_keys() {
        let map = SourceMap::new(TEXT);
        assert_eq!(map.line_of_key("app"), Some(1));
        assert_eq!(map.line_of_key("services.backend.port"), Some(4));
        assert_eq!(map.line_of_key("services.backend.replicas"), Some(5));
        // A missing key points at its nearest parent.
        assert_eq!(map.line_of_key("services.backend.health"), Some(3));
    }

    #[test]
    fn finds_key_of_an_offset() {
        let map = SourceMap::new(TEXT);
        let offset = TEXT.find("8000").unwrap_or_default();
        assert_eq!(map.key_at(offset).as_deref(), Some("services.backend.port"));
    }
}
