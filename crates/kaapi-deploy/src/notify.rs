//! Posts a deploy's or rollback's outcome to the environment's webhooks (`[notifications]`).
//! A notification that cannot be sent is a warning: it never fails the deploy. Each post is
//! bounded by the configured timeout, and no URL (a secret) is ever printed.

use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::notify::{self, Notice, NotificationsConfig, WebhookFormat};
use kaapi_core::pipeline::DeployReport;
use kaapi_core::release::ReleaseMeta;

use crate::output::yellow;

/// Tells the webhooks of `target` that `action` (deploy, rollback) starts.
pub async fn started(
    target: &ResolvedEnvironment,
    action: &str,
    meta: &ReleaseMeta,
    url: Option<&str>,
) {
    let Some(config) = notify::for_environment(target) else {
        return;
    };
    send(config, &Notice::started(action, target.name(), meta, url)).await;
}

/// Notifies the webhooks of `target` about `report`, printing a warning for each that failed.
pub async fn report(
    target: &ResolvedEnvironment,
    action: &str,
    report: &DeployReport,
    meta: &ReleaseMeta,
    url: Option<&str>,
) {
    let Some(config) = notify::for_environment(target) else {
        return;
    };
    send(config, &Notice::of(action, report, meta, url)).await;
}

async fn send(config: &NotificationsConfig, notice: &Notice) {
    let lookup = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    for warning in post_all(config, notice, lookup).await {
        eprintln!("{} {warning}", yellow("warning:"));
    }
}

fn format_name(format: WebhookFormat) -> &'static str {
    match format {
        WebhookFormat::Slack => "Slack",
        WebhookFormat::Discord => "Discord",
        WebhookFormat::Json => "JSON",
    }
}

/// Posts `notice` to every webhook whose URL `lookup` finds; returns one warning per failure.
pub async fn post_all(
    config: &NotificationsConfig,
    notice: &Notice,
    lookup: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    // The TLS provider the client uses; one already installed by another part stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .timeout(config.timeout())
        .connect_timeout(config.timeout())
        .build()
    {
        Ok(client) => client,
        Err(e) => return vec![format!("notifications not sent: {}", e.without_url())],
    };
    for hook in &config.webhooks {
        let variable = hook.url_env.as_str();
        let format = format_name(hook.format);
        let Some(url) = lookup(variable) else {
            warnings.push(format!(
                "the {format} notification was not sent: the variable {variable} (its webhook URL) is not set"
            ));
            continue;
        };
        let body = notify::body(hook.format, notice);
        match client.post(&url).json(&body).send().await {
            Ok(answer) if answer.status().is_success() => {}
            Ok(answer) => warnings.push(format!(
                "the {format} webhook in {variable} answered {}; the notification was not delivered",
                answer.status()
            )),
            Err(e) => warnings.push(format!(
                "the {format} notification to the webhook in {variable} failed: {}",
                e.without_url()
            )),
        }
    }
    warnings
}

#[cfg(test)]
mod tests;
