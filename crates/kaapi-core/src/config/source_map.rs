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

    /// The dotted path of the deepest key whose entry contains `offset`. Tables written as
    /// `[a.b]` headers only span their header, so every table is searched, not only the ones
    /// whose span contains the offset. Falls back to reading the text around the offset when
    /// the document does not parse (e.g. a duplicate key).
    pub fn key_at(&self, offset: usize) -> Option<String> {
        match self.root.as_ref() {
            Some(root) => {
                let mut path = Vec::new();
                let mut best = None;
                deepest_key(root.get_ref(), offset, &mut path, &mut best);
                best.map(|(_, p)| p.join("."))
            }
            None => self.key_at_lexically(offset),
        }
    }

    /// The key of the line holding `offset`, prefixed with the nearest `[table]` header above
    /// it; for a header line, the header itself.
    fn key_at_lexically(&self, offset: usize) -> Option<String> {
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let line_start = self.text[..end].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[end..]
            .find('\n')
            .map_or(self.text.len(), |i| end + i);
        let line = self.text[line_start..line_end].trim();
        if let Some(header) = table_header(line) {
            return Some(header);
        }
        let key = line.split_once('=').map(|(k, _)| clean_key(k))?;
        if key.is_empty() {
            return None;
        }
        let table = self.text[..line_start]
            .lines()
            .rev()
            .find_map(|l| table_header(l.trim()));
        Some(match table {
            Some(table) => format!("{table}.{key}"),
            None => key,
        })
    }
}

fn table_header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let (inner, _) = inner.split_once(']')?;
    Some(clean_key(inner))
}

/// `services . "backend"` → `services.backend`.
fn clean_key(raw: &str) -> String {
    raw.split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".")
}

type Best = Option<(usize, Vec<String>)>;

/// Records the narrowest key or value span holding `offset`, with the path that leads to it.
fn deepest_key(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>, best: &mut Best) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        for span in [key.span(), value.span()] {
            let holds = span.contains(&offset) || (span.is_empty() && span.start == offset);
            let narrower = best.as_ref().is_none_or(|(width, p)| {
                span.len() < *width || (span.len() == *width && path.len() > p.len())
            });
            if holds && narrower {
                *best = Some((span.len(), path.clone()));
            }
        }
        match value.get_ref() {
            DeValue::Table(inner) => deepest_key(inner, offset, path, best),
            DeValue::Array(items) => {
                for item in items.iter() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        deepest_key(inner, offset, path, best);
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
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
        let header = TEXT.find("[services").unwrap_or_default();
        assert_eq!(map.key_at(header).as_deref(), Some("services.backend"));
    }

    #[test]
    fn finds_key_of_an_offset_in_a_document_that_does_not_parse() {
        let text = "app = 'k'\n[services.backend]\nport = 1\n[services.backend]\nport = 2\n";
        let map = SourceMap::new(text);
        let second = text.rfind("backend").unwrap_or_default();
        assert_eq!(map.key_at(second).as_deref(), Some("services.backend"));
        let port = text.rfind("port").unwrap_or_default();
        assert_eq!(map.key_at(port).as_deref(), Some("services.backend.port"));
    }
}
