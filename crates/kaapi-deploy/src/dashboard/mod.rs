//! `kaapi-deploy dashboard`: a read-only web page on 127.0.0.1 with every environment's current
//! release and health, the release timeline, replicas or tasks, a deploy in progress, and plots
//! of requests, errors and latency with release boundaries. Every asset is compiled in (no CDN:
//! it works offline); the page polls `/api/state`, which a background task refreshes each second.

mod collect;
mod snapshot;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

pub use collect::Watched;
use snapshot::Snapshot;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");
/// Where the page's first state goes, so that it renders without waiting for a request.
const INITIAL_STATE_MARK: &str = "/*INITIAL_STATE*/null";
const REFRESH: Duration = Duration::from_secs(1);

type Shared = Arc<RwLock<Snapshot>>;

/// Binds 127.0.0.1:`port` (0: any free port); the caller prints the URL and calls [`serve`].
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).await
}

/// Serves the page until the process is stopped, refreshing the snapshot in the background.
pub async fn serve(
    listener: TcpListener,
    mut watched: Vec<Watched>,
    state_dir: PathBuf,
) -> std::io::Result<()> {
    let first = collect::snapshot(&mut watched, &state_dir).await;
    let shared: Shared = Arc::new(RwLock::new(first));
    let refreshed = Arc::clone(&shared);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REFRESH).await;
            let next = collect::snapshot(&mut watched, &state_dir).await;
            *refreshed
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        }
    });
    axum::serve(listener, router(shared)).await
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dashboard.js", get(script))
        .route("/dashboard.css", get(style))
        .route("/api/state", get(state))
        .with_state(shared)
}

fn current(shared: &Shared) -> Snapshot {
    shared
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

async fn index(State(shared): State<Shared>) -> Response {
    let json = serde_json::to_string(&current(&shared)).unwrap_or_else(|_| "null".to_owned());
    Html(page_with_state(&json)).into_response()
}

/// The page with its first state inlined in a `<script>`; `</` is escaped so that no value can
/// end the script element early.
fn page_with_state(json: &str) -> String {
    INDEX.replace(INITIAL_STATE_MARK, &json.replace("</", "<\\/"))
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn state(State(shared): State<Shared>) -> Response {
    Json(current(&shared)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_first_state_and_no_value_can_close_the_script() {
        assert!(INDEX.contains(INITIAL_STATE_MARK));
        let page = page_with_state(r#"{"x":"</script><script>alert(1)</script>"}"#);
        assert!(!page.contains(INITIAL_STATE_MARK));
        assert!(!page.contains("</script><script>alert"), "{page}");
        assert!(page.contains(r#"<\/script>"#));
    }

    #[test]
    fn every_asset_is_local() {
        assert!(!INDEX.contains("http") && !STYLE.contains("http"));
        // The script's only URL is the SVG namespace it creates elements in.
        let urls: Vec<&str> = SCRIPT
            .match_indices("http")
            .map(|(i, _)| &SCRIPT[i..(i + 26).min(SCRIPT.len())])
            .collect();
        assert!(
            urls.iter().all(|u| *u == "http://www.w3.org/2000/svg"),
            "{urls:?}"
        );
    }
}
