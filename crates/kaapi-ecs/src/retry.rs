//! Retrying calls that AWS throttled. The SDK's own retry strategy already retries a few times;
//! this outer loop keeps a long deploy alive through a sustained burst of throttling, with
//! backoff, and says so.

use std::future::Future;

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use kaapi_core::progress::Progress;

use crate::backoff::Backoff;
use crate::error::{error_code, is_throttling};
use crate::tuning::Tuning;

pub async fn retry_throttled<T, E, R, F, Fut>(
    tuning: &Tuning,
    what: &str,
    progress: &dyn Progress,
    mut call: F,
) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut backoff = Backoff::new(tuning.poll_initial, tuning.poll_max);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if is_throttling(error_code(&e)) && attempt < tuning.throttle_attempts => {
                let delay = backoff.next_delay();
                progress.info(format!(
                    "{what}: AWS is throttling requests; retrying in {:.1}s (attempt {attempt} of {})",
                    delay.as_secs_f64(),
                    tuning.throttle_attempts
                ));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
