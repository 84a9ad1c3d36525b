//! Where a CI deploy's image comes from: built from this commit, or promoted from the
//! environment named by `promote_from`. Pure decisions, so the local-only build has them too.

use kaapi_core::config::Config;
use kaapi_core::engine::ImageSource;

/// Where a deploy's image comes from, for the pipeline and for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    pub source: ImageSource,
    /// `built from this commit`, `promoted from `staging` release 4 (…)`.
    pub origin: String,
}

/// The environment a deploy promotes from: set for a version deploy of an environment with
/// `promote_from`, unless `rebuild`.
pub fn promotion_source(
    config: &Config,
    environment: &str,
    is_version: bool,
    rebuild: bool,
) -> Option<String> {
    let from = config.environment(environment)?.promote_from.clone()?;
    (is_version && !rebuild).then_some(from)
}

/// The image for a deploy that builds: says whether the build was forced.
pub fn build_choice(
    config: &Config,
    environment: &str,
    is_version: bool,
    rebuild: bool,
) -> ImageChoice {
    let promotes = config
        .environment(environment)
        .is_some_and(|e| e.promote_from.is_some());
    let origin = if promotes && is_version && rebuild {
        "rebuilt from this commit (--rebuild)"
    } else {
        "built from this commit"
    };
    ImageChoice {
        source: ImageSource::Build,
        origin: origin.to_owned(),
    }
}
