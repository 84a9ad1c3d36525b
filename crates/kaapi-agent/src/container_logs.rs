//! The log options of every container the local engine starts (replicas, one-off tasks,
//! accessories): Docker's json-file driver with rotation, so that no container's log grows
//! without bound.

use std::collections::HashMap;

use bollard::models::HostConfigLogConfig;

use super::api::LogLimits;

pub fn log_config(limits: LogLimits) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), format!("{}m", limits.max_size_mb)),
            ("max-file".to_owned(), limits.max_files.to_string()),
        ])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_options_are_in_dockers_own_units() {
        let config = log_config(LogLimits {
            max_size_mb: 5,
            max_files: 2,
        });
        assert_eq!(config.typ.as_deref(), Some("json-file"));
        let options = config.config.unwrap_or_default();
        assert_eq!(options.get("max-size").map(String::as_str), Some("5m"));
        assert_eq!(options.get("max-file").map(String::as_str), Some("2"));
    }
}
