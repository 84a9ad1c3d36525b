//! The local engine's side of `plan` for accessories: what each accessory's container runs now
//! (read back from Docker) and what the config asks for, as the core's [`AccessoryView`].

use std::collections::BTreeMap;

use bollard::Docker;
use kaapi_core::engine::EngineResult;
use kaapi_core::plan::AccessoryView;

use crate::accessories;
use crate::accessory_spec::AccessorySpec;

/// What the config asks `spec`'s container to run.
pub fn planned(spec: &AccessorySpec) -> AccessoryView {
    AccessoryView {
        name: spec.name.clone(),
        image: spec.image.clone(),
        command: spec.command.clone(),
        env: spec.env.clone(),
        ports: spec
            .ports
            .iter()
            .map(|(host, container)| port_line(host.map(|h| h.to_string()), *container))
            .collect(),
        volumes: spec.volumes.clone(),
    }
}

/// What `spec`'s container runs now; `None` when it has no container.
pub async fn running(docker: &Docker, spec: &AccessorySpec) -> EngineResult<Option<AccessoryView>> {
    let Some(found) = accessories::inspect(docker, &spec.container).await? else {
        return Ok(None);
    };
    let config = found.config.unwrap_or_default();
    let host = found.host_config.unwrap_or_default();
    let image = config.image.unwrap_or_default();
    // Docker merges the image's own variables (PG_VERSION…) and command into the container's:
    // those are not the config's, unless the config sets them too.
    let defaults = image_defaults(docker, &image).await;
    let image_env = defaults.env;
    let env: BTreeMap<String, String> = config
        .env
        .unwrap_or_default()
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, value)| {
            spec.env.contains_key(*name) || image_env.get(*name).map(String::as_str) != Some(*value)
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let mut ports: Vec<(u16, String)> = host
        .port_bindings
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, bindings)| {
            let container = key.split('/').next()?.parse::<u16>().ok()?;
            let host = bindings?.first()?.host_port.clone();
            Some((container, port_line(host, container)))
        })
        .collect();
    // In the config's order, which Docker's map does not keep.
    ports.sort_by_key(|(container, _)| {
        spec.ports
            .iter()
            .position(|(_, c)| c == container)
            .unwrap_or(usize::MAX)
    });
    Ok(Some(AccessoryView {
        name: spec.name.clone(),
        image,
        command: config
            .cmd
            .filter(|cmd| spec.command.is_some() || Some(cmd) != defaults.cmd.as_ref()),
        env,
        ports: ports.into_iter().map(|(_, line)| line).collect(),
        volumes: host.binds.unwrap_or_default(),
    }))
}

/// `127.0.0.1:HOST->CONTAINER`, `auto` when Docker picks the host port.
fn port_line(host: Option<String>, container: u16) -> String {
    let host = host.filter(|h| !h.is_empty() && h != "0");
    format!(
        "127.0.0.1:{}->{container}",
        host.as_deref().unwrap_or("auto")
    )
}

/// What an image sets itself.
#[derive(Default)]
struct ImageDefaults {
    env: BTreeMap<String, String>,
    cmd: Option<Vec<String>>,
}

/// The image's own variables and command; none when it cannot be read (then the container's
/// count as the config's, which at worst shows one change too many).
async fn image_defaults(docker: &Docker, image: &str) -> ImageDefaults {
    let Ok(inspected) = docker.inspect_image(image).await else {
        return ImageDefaults::default();
    };
    let config = inspected.config.unwrap_or_default();
    ImageDefaults {
        env: config
            .env
            .unwrap_or_default()
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        cmd: config.cmd,
    }
}

#[cfg(test)]
mod tests {
    use super::port_line;

    #[test]
    fn a_port_docker_picks_reads_as_auto_whichever_way_docker_says_it() {
        assert_eq!(port_line(None, 5432), "127.0.0.1:auto->5432");
        assert_eq!(port_line(Some(String::new()), 5432), "127.0.0.1:auto->5432");
        assert_eq!(
            port_line(Some("15432".into()), 5432),
            "127.0.0.1:15432->5432"
        );
    }
}
