//! Verification from outside: `GET {url}{health path}` with retries.

use std::time::Duration;

use kaapi_core::progress::Progress;

use crate::session::Ctx;

/// `Ok(())` once the health URL answers 2xx; `Err` with the last failure after the retries.
/// No URL or no health path: nothing to check from outside, which is said, not failed.
pub async fn verify(ctx: &Ctx, progress: &dyn Progress) -> Result<(), String> {
    let Some(base) = ctx.target.env().url.as_deref() else {
        progress.warning(format!(
            "environment `{}` has no `url`; skipping the check from outside (ECS health checks still ran)",
            ctx.target.environment()
        ));
        return Ok(());
    };
    let path = ctx
        .target
        .config()
        .web_service()
        .and_then(|(_, s)| s.health.as_ref())
        .map(|h| h.path.clone())
        .unwrap_or_else(|| "/".to_owned());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Err(format!("cannot create an HTTP client: {e}")),
    };
    let attempts = ctx.tuning.verify_attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                progress.info(format!("GET {url} answered {}", r.status()));
                return Ok(());
            }
            Ok(r) => last = format!("GET {url} answered {}", r.status()),
            Err(e) => last = format!("GET {url} failed: {e}"),
        }
        if attempt < attempts {
            progress.info(format!("{last}; retrying ({attempt}/{attempts})"));
            tokio::time::sleep(ctx.tuning.verify_interval).await;
        }
    }
    Err(format!("{last} after {attempts} attempts"))
}
