//! The web dashboard: a static page (HTML, JavaScript, CSS from `src/ui/`)
//! embedded in the binary, so it works offline and ships with the version
//! of the API it reads.
//!
//! - `GET /ui` (and `/ui/`) — the page
//! - `GET /ui/{file}` — one of the embedded files; any other name is 404
//!
//! The page holds no data and needs no token: a browser navigating to
//! `/ui` cannot send a bearer header. It reads the token from the URL
//! fragment (`/ui#token=...`, never sent to the server), keeps it in
//! `sessionStorage`, and sends `Authorization: Bearer` on every data call
//! (`GET /jobs`, `GET /jobs/{job}/metrics`, the command `POST`s). So this
//! router is mounted beside the token middleware, not behind it, and
//! behind whatever else guards the server (the `Host` check, TLS).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: &str = "index.html";

const ASSETS: &[Asset] = &[
    Asset {
        name: INDEX,
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("ui/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("ui/style.css"),
    },
];

/// Scripts and styles only from this origin, data only from this origin,
/// no framing: a tenant's job name or error shown on the page cannot
/// load or run anything (the page also only ever sets text, never HTML).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/ui", get(|| async { serve(INDEX) }))
        .route("/ui/", get(|| async { serve(INDEX) }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

/// The embedded file `name`, or 404 naming it.
fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        let shown = weir_core::text::cut(name, 128);
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no dashboard file `{shown}`\n"),
        )
            .into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // A new binary may serve new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves [`router`] on a loopback port for the duration of `f`.
    fn with_server(f: impl FnOnce(&str)) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app: axum::Router = router::<()>();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        f(&format!("http://{addr}"));
        let _ = stop_tx.send(());
        thread.join().expect("server thread");
    }

    /// Status, content type and body of `GET url`.
    fn get(url: &str) -> (u16, String, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(url).call().expect("request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.body_mut().read_to_vec().expect("body");
        (status, content_type, body)
    }

    #[test]
    fn serves_the_page_and_its_files_with_their_types() {
        with_server(|base| {
            for path in ["/ui", "/ui/", "/ui/index.html"] {
                let (status, content_type, body) = get(&format!("{base}{path}"));
                assert_eq!(status, 200, "{path}");
                assert_eq!(content_type, "text/html; charset=utf-8", "{path}");
                let html = String::from_utf8(body).expect("utf-8");
                assert!(
                    html.contains("/ui/app.js"),
                    "{path}: the page loads its script"
                );
                assert!(
                    html.contains("/ui/style.css"),
                    "{path}: the page loads its style"
                );
            }
            let (status, content_type, body) = get(&format!("{base}/ui/app.js"));
            assert_eq!(
                (status, content_type.as_str()),
                (200, "text/javascript; charset=utf-8")
            );
            assert_eq!(body, include_bytes!("ui/app.js"));
            let (status, content_type, body) = get(&format!("{base}/ui/style.css"));
            assert_eq!(
                (status, content_type.as_str()),
                (200, "text/css; charset=utf-8")
            );
            assert_eq!(body, include_bytes!("ui/style.css"));
        });
    }

    #[test]
    fn unknown_files_are_not_found() {
        with_server(|base| {
            for path in [
                "/ui/nope.js",
                "/ui/..%2FCargo.toml",
                "/ui/APP.JS",
                "/ui/app.js/x",
            ] {
                let (status, _, _) = get(&format!("{base}{path}"));
                assert_eq!(status, 404, "{path}");
            }
            let (status, content_type, body) = get(&format!("{base}/ui/nope.js"));
            assert_eq!(status, 404);
            assert_eq!(content_type, "text/plain; charset=utf-8");
            assert!(String::from_utf8_lossy(&body).contains("`nope.js`"));
        });
    }

    #[test]
    fn the_page_is_locked_down() {
        let response = serve(INDEX);
        let headers = response.headers();
        let csp = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(
            headers.get(header::X_CONTENT_TYPE_OPTIONS),
            Some(&HeaderValue::from_static("nosniff"))
        );
    }

    #[test]
    fn every_file_the_page_names_is_embedded_and_the_whole_stays_small() {
        let html = std::str::from_utf8(include_bytes!("ui/index.html")).expect("utf-8");
        for asset in ASSETS {
            assert!(
                asset.name == INDEX || html.contains(&format!("/ui/{}", asset.name)),
                "index.html does not load {}",
                asset.name
            );
        }
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 60 * 1024, "the dashboard is {total} bytes");
    }

    /// The page's logic (rates, layout, formats) under node, when the
    /// machine has it; the page itself is tested in a browser elsewhere.
    #[test]
    fn the_page_logic_passes_its_node_tests() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ui/app.test.js");
        match std::process::Command::new("node").arg(script).output() {
            Ok(out) => assert!(
                out.status.success(),
                "node {script}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("node not found ({e}): the page logic is not tested here"),
        }
    }
}
