//! Environment variables as a map, so code that reads them (GitHub Actions context, AWS
//! credentials) is tested without touching the process environment.

use std::collections::BTreeMap;

/// Environment variables by name.
pub type Vars = BTreeMap<String, String>;

/// The process environment as [`Vars`] (variables that are not UTF-8 are skipped).
pub fn process_vars() -> Vars {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
