//! How a release is written on its task-definition revisions: the tag keys the history reads
//! back, and tag values ECS accepts.

use aws_sdk_ecs::types::Tag;

pub const RELEASE: &str = "kaapi:release";
pub const SERVICE: &str = "kaapi:service";
pub const COMMIT: &str = "kaapi:commit";
pub const VERSION: &str = "kaapi:version";
pub const DEPLOYER: &str = "kaapi:deployer";
pub const TIME: &str = "kaapi:time";
pub const IMAGE: &str = "kaapi:image";
pub const IMAGE_TAGS: &str = "kaapi:image-tags";
pub const OUTCOME: &str = "kaapi:outcome";
pub const DETAIL: &str = "kaapi:detail";
pub const ROLLBACK_OF: &str = "kaapi:rollback-of";
/// The database schema version the release's code runs on (`[migrations] version_command`).
pub const SCHEMA_VERSION: &str = "kaapi:schema-version";
/// `kaapi:revision:worker` = `family:N` of the other services of the release.
pub const REVISION_PREFIX: &str = "kaapi:revision:";
/// On an ECS service: its last scaling event (see `scale.rs`).
pub const SCALED: &str = "kaapi:scaled";

/// A tag value ECS accepts: letters, digits, spaces and `+ - = . _ : / @`, at most 256 chars.
pub fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " +-=._:/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

pub fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(tag_value(value)).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_drop_characters_ecs_refuses() {
        assert_eq!(tag_value("Alice <a@b.c>, (x)"), "Alice _a@b.c__ _x_");
        assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
    }
}
