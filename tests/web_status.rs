//! The web status page in a real browser: headless Chromium loads `/` from a daemon
//! that follows two sources, waits until the page has plotted real data from
//! `/api/history` (it sets `<body data-ready="1">` and `data-points` on each plot), and
//! saves a screenshot to `target/web-status.png` for people to look at.
//!
//! Everything runs inside a network namespace of the test's own, so the browser can
//! reach nothing but the daemons on its loopback. Chromium comes from Debian
//! (`scripts/install-test-deps.sh`); without it, or without root, the test prints SKIP
//! (and fails when CI is set).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::ops::*;
use support::*;

/// Run headless Chromium in `ns` on `url` with `extra` flags.
fn chromium(ns: &Netns, profile: &Path, url: &str, extra: &[String]) -> Output {
    let browser = find_tool("chromium").expect("chromium");
    let mut cmd = sandboxed(Some(ns), browser);
    cmd.args([
        "--headless",
        "--no-sandbox", // root in a test sandbox: Chromium's own sandbox refuses root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-breakpad",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--window-size=1200,900",
        "--virtual-time-budget=20000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .env("HOME", profile)
    .env("XDG_CONFIG_HOME", profile.join("config"))
    .env("XDG_CACHE_HOME", profile.join("cache"));
    run_bounded(&mut cmd, Duration::from_secs(120))
}

/// The value of `attr` on the element whose `id` is `id`, in serialised HTML.
fn attribute(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..at + dom[at..].find('>')?];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

/// Width and height of a PNG file.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() > 24, "tiny PNG");
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn status_page_plots_live_data_in_chromium() {
    if !require_root_and_tools(&["chromium"]) {
        return;
    }
    let ns = Netns::new("web");
    let upstream = local_upstream(Some(&ns));
    let (client, metrics) = synced_client(Some(&ns), &upstream, "");

    // Real data first: a few samples of each source and some system points.
    let history = poll_until(Duration::from_secs(90), || {
        let r = client.http_get(metrics, "/api/history").ok()?;
        let h = Json::parse(&r.text()).ok()?;
        let sources = h.at("sources").arr();
        let enough = sources.len() == 2
            && sources.iter().all(|s| s.at("points").arr().len() >= 3)
            && h.at("system").arr().len() >= 2;
        enough.then_some(h)
    })
    .unwrap_or_else(|| {
        panic!(
            "no history after 90 s: {}",
            client
                .http_get(metrics, "/api/history")
                .map(|r| r.text())
                .unwrap_or_default()
        )
    });
    let points: usize = history
        .at("sources")
        .arr()
        .iter()
        .map(|s| s.at("points").arr().len())
        .sum();
    eprintln!("history: {points} source points");

    let profile = TempDir::new("chromium");
    let url = format!("http://{metrics}/");
    let mut dom = String::new();
    let mut ready = false;
    for attempt in 1..=3 {
        let out = chromium(&ns, profile.path(), &url, &["--dump-dom".into()]);
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        ready = dom.contains("<body data-ready=\"1\"");
        if ready {
            break;
        }
        eprintln!(
            "attempt {attempt}: page not ready\n{}",
            describe_output(&out).chars().take(4000).collect::<String>()
        );
    }
    assert!(ready, "page never set data-ready=\"1\":\n{dom}");

    // Every plot drew real points; the table lists both sources; the state is shown.
    for plot in ["plot-offset", "plot-delay", "plot-jitter", "plot-frequency"] {
        let n: usize = attribute(&dom, plot, "data-points")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(n >= 2, "{plot} drew {n} points");
    }
    for plot in ["plot-offset", "plot-delay", "plot-jitter"] {
        assert_eq!(
            attribute(&dom, plot, "data-series").as_deref(),
            Some("2"),
            "{plot}: one line per source"
        );
    }
    assert!(dom.matches("<polyline").count() >= 4, "lines drawn");
    assert!(dom.matches("<circle").count() >= points, "points drawn");
    for source in ["127.0.0.1:1123", "127.0.0.2:1123"] {
        assert!(
            dom.contains(&format!("<td>{source}</td>")),
            "{source} in the table"
        );
    }
    assert!(dom.contains(">Synchronised<"), "state badge");
    assert!(
        dom.contains("to 127.0.0.") && dom.contains("at stratum 12"),
        "state detail"
    );

    // A screenshot for people (and for the test: it has the window's size).
    let shot: PathBuf = repo_root().join("target/web-status.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &ns,
        profile.path(),
        &url,
        &[format!("--screenshot={}", shot.display())],
    );
    assert!(shot.is_file(), "no screenshot:\n{}", describe_output(&out));
    assert_eq!(png_size(&shot), (1200, 900));
    let bytes = std::fs::metadata(&shot).unwrap().len();
    assert!(bytes > 30_000, "screenshot of {bytes} bytes looks empty");
    eprintln!("screenshot: {}", shot.display());
}
