//! The head's dashboard in a real browser: `parallel head`, two `parallel
//! node` agents and a pool (the `cluster` test program), watched by
//! headless Chromium through WebDriver (chromedriver). The page must show
//! both nodes and their workers, and its job counters must move while the
//! pool maps; a screenshot is saved under the test's output directory.
//! `/metrics` is read by a Prometheus text parser, and a dashboard that
//! listens beyond loopback refuses requests without its token.
//!
//! Needs `chromium` and `chromium-driver` (Debian); CI installs them. On a
//! machine without them the browser test says so and passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use parallel_integration_tests::printed::{Printed, STEP};
use tokio::process::Command;

const CLUSTER: &str = env!("CARGO_BIN_EXE_cluster");
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The `parallel` command, built beside the test programs.
fn parallel_command() -> PathBuf {
    let exe = PathBuf::from(CLUSTER).with_file_name("parallel");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build -p parallel --bin parallel`",
        exe.display()
    );
    exe
}

fn start(program: &Path, args: &[&str]) -> Printed {
    Printed::start(Command::new(program), args)
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "parallel-dashboard-{what}-{}-{}",
        std::process::id(),
        parallel::NodeId::new()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A head (`parallel head`) with its dashboard on `board` (`None`: where
/// it puts it by default): the head's process, its join line and its
/// dashboard URL.
async fn head(data: &Path, board: Option<&str>) -> (Printed, String, String) {
    let mut args = vec![
        "head",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ];
    if let Some(board) = board {
        args.extend(["--dashboard", board]);
    }
    let mut h = start(&parallel_command(), &args);
    let join = h.wait_for("    parallel node --join").await;
    let line = join
        .split('\'')
        .nth(1)
        .expect("the join line in quotes")
        .to_owned();
    let url = h.wait_for("dashboard: ").await;
    let url = url.trim_start_matches("dashboard: ").trim().to_owned();
    (h, line, url)
}

async fn node(line: &str, data: &Path, workers: u32) -> Printed {
    let workers = workers.to_string();
    let mut n = start(
        &parallel_command(),
        &[
            "node",
            "--join",
            line,
            "--workers",
            &workers,
            "--data",
            data.to_str().unwrap(),
        ],
    );
    n.wait_for("joined the head").await;
    n
}

/// A plain HTTP GET over loopback: (status, body).
fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `host:port` of a dashboard URL, reached over loopback.
fn loopback_of(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("http://");
    let hostport = rest.split('/').next().expect("host:port");
    let port: u16 = hostport
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn sample(scrape: &prometheus_parse::Scrape, metric: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{metric} is not a number"),
        })
        .sum()
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}): {text}"))
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn browser() -> Option<(Driver, Client)> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        eprintln!(
            "SKIPPED: no {CHROMEDRIVER} or {CHROMIUM} (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = free_port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,2000"],
        }),
    );
    let deadline = Instant::now() + STEP;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(client) => return Some((driver, client)),
            Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The text of `css` (trimmed), or "" while it is not there.
async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default().trim().to_owned(),
        Err(_) => String::new(),
    }
}

async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

/// Polls `check` until it holds (within [`STEP`]); what the page showed
/// last otherwise.
async fn until<F, Fut>(client: &Client, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STEP;
    while !check().await {
        if Instant::now() > deadline {
            let shown = text(client, "main").await;
            panic!("the dashboard never showed {what}; it shows:\n{shown}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn number(s: &str) -> u64 {
    s.replace(',', "").parse().unwrap_or(0)
}

#[tokio::test]
async fn the_dashboard_shows_nodes_workers_and_moving_job_counters_in_chromium() {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let dir = temp_dir("browser");
    let (h, line, url) = head(&dir.join("head"), Some("127.0.0.1:0")).await;
    assert!(!url.contains("token="), "no token on loopback: {url}");
    let a = node(&line, &dir.join("a"), 2).await;
    let b = node(&line, &dir.join("b"), 2).await;
    client.goto(&url).await.expect("open the dashboard");
    until(&client, "its live connection", || async {
        text(&client, "#connection").await.contains("live")
    })
    .await;
    until(&client, "two nodes", || async {
        count(&client, "#nodes tr.node").await == 2
    })
    .await;
    // A pool of 800 jobs of 15 ms on 4 workers: about 3 s of work.
    let mut pool = start(Path::new(CLUSTER), &["pool", &line, "map", "800", "15"]);
    pool.wait_for("CONNECTED").await;
    until(&client, "the pool's four workers", || async {
        count(&client, "#workers tr.worker").await == 4
            && count(&client, "#pools tr.pool").await == 1
    })
    .await;
    until(&client, "jobs done", || async {
        number(&text(&client, "#total-done").await) > 0
    })
    .await;
    let first = number(&text(&client, "#total-done").await);
    until(&client, "the done counter moving", || async {
        number(&text(&client, "#total-done").await) > first
    })
    .await;
    // The picture while the pool runs, for the CI's artifacts and the book.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let shot = shots.join("dashboard.png");
    std::fs::write(&shot, &png).expect("save the screenshot");
    eprintln!("screenshot: {}", shot.display());
    let results = pool.wait_for("RESULTS").await;
    assert!(results.contains("RESULTS 800 WRONG 0"), "{results}");
    until(&client, "all 800 jobs done", || async {
        number(&text(&client, "#total-done").await) == 800
    })
    .await;
    assert_eq!(text(&client, "#total-lost").await, "0");
    assert_eq!(text(&client, "#total-failed").await, "0");
    assert!(
        count(&client, "#task-stream rect").await > 0,
        "the task stream draws the jobs"
    );
    let hosts = text(&client, "#nodes").await;
    assert!(hosts.contains("up"), "{hosts}");
    // What the page drew came from /metrics' numbers too.
    let (status, body) = get(loopback_of(&url), "/metrics", None);
    assert_eq!(status, 200, "{body}");
    let metrics = scrape(&body);
    assert_eq!(sample(&metrics, "parallel_jobs_done_total"), 800.0);
    assert_eq!(sample(&metrics, "parallel_jobs_submitted_total"), 800.0);
    assert_eq!(sample(&metrics, "parallel_jobs_lost"), 0.0);
    assert_eq!(sample(&metrics, "parallel_nodes"), 2.0);
    assert!(sample(&metrics, "parallel_peer_frames_sent_total") > 0.0);
    let _ = client.close().await;
    pool.stop().await;
    for p in [a, b, h] {
        p.terminate().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn beyond_loopback_the_dashboard_refuses_requests_without_its_token() {
    let dir = temp_dir("token");
    let (h, _line, url) = head(&dir.join("head"), Some("0.0.0.0:0")).await;
    let token = url
        .split_once("?token=")
        .map(|(_, t)| t.to_owned())
        .unwrap_or_else(|| panic!("a URL with its token: {url}"));
    assert!(token.len() >= 16, "{token}");
    let addr = loopback_of(&url);
    for path in ["/", "/api/cluster", "/api/events", "/metrics"] {
        let (status, body) = get(addr, path, None);
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(body.contains("needs its token"), "{body}");
        let (status, _) = get(addr, &format!("{path}?token=wrong{token}"), None);
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, page) = get(addr, &format!("/?token={token}"), None);
    assert_eq!(status, 200);
    assert!(page.contains("para||el"), "{page}");
    let (status, json) = get(addr, &format!("/api/cluster?token={token}"), None);
    assert_eq!(status, 200, "{json}");
    let view: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(view["totals"]["lost"], 0);
    let (status, body) = get(addr, "/metrics", Some(&format!("Bearer {token}")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(sample(&scrape(&body), "parallel_nodes"), 0.0);
    h.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/api/cluster` as JSON (blocking GET, off the runtime's thread).
async fn cluster_view(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = tokio::task::spawn_blocking(move || get(addr, "/api/cluster", None))
        .await
        .expect("the GET ran");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls `/api/cluster` until `check` finds what it wants in it.
async fn until_view<T>(
    addr: SocketAddr,
    what: &str,
    mut check: impl FnMut(&serde_json::Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        let view = cluster_view(addr).await;
        if let Some(found) = check(&view) {
            return found;
        }
        assert!(Instant::now() < deadline, "never {what}; last view: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The (pid, incarnation, last exit) of every worker the node agents
/// report.
fn children(view: &serde_json::Value) -> Vec<(u64, u64, Option<String>)> {
    let mut all = Vec::new();
    for node in view["nodes"].as_array().into_iter().flatten() {
        for sup in node["supervisors"].as_array().into_iter().flatten() {
            for child in sup["children"].as_array().into_iter().flatten() {
                all.push((
                    child["pid"].as_u64().unwrap_or(0),
                    child["incarnation"].as_u64().unwrap_or(0),
                    child["last_exit"].as_str().map(str::to_owned),
                ));
            }
        }
    }
    all
}

#[tokio::test]
async fn a_killed_worker_shows_as_restarted_with_its_exit_and_the_jobs_all_finish() {
    let dir = temp_dir("restart");
    let (h, line, url) = head(&dir.join("head"), Some("127.0.0.1:0")).await;
    let addr = loopback_of(&url);
    let n = node(&line, &dir.join("a"), 2).await;
    // 300 jobs of 20 ms on 2 workers: about 3 s of work.
    let mut pool = start(Path::new(CLUSTER), &["pool", &line, "map", "300", "20"]);
    pool.wait_for("CONNECTED").await;
    let victim = until_view(addr, "two running workers with process ids", |v| {
        let kids = children(v);
        let running: Vec<u64> = kids.iter().filter(|k| k.0 > 0).map(|k| k.0).collect();
        let busy = v["totals"]["done"].as_u64().unwrap_or(0) > 20;
        (running.len() == 2 && busy).then(|| running[0])
    })
    .await;
    // SAFETY: SIGKILL to a worker of the node agent this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let (incarnation, exit) = until_view(addr, "the killed worker restarted", |v| {
        children(v)
            .into_iter()
            .find(|k| k.1 >= 2 && k.0 != victim && k.0 > 0)
            .map(|k| (k.1, k.2))
    })
    .await;
    assert_eq!(incarnation, 2);
    assert!(
        exit.as_deref().is_some_and(|e| !e.is_empty()),
        "the last exit is shown: {exit:?}"
    );
    let results = pool.wait_for("RESULTS").await;
    assert!(results.contains("RESULTS 300 WRONG 0"), "{results}");
    let (status, body) = tokio::task::spawn_blocking(move || get(addr, "/metrics", None))
        .await
        .expect("the GET ran");
    assert_eq!(status, 200);
    let metrics = scrape(&body);
    assert_eq!(
        sample(&metrics, "parallel_worker_restarts_total"),
        1.0,
        "{body}"
    );
    assert_eq!(sample(&metrics, "parallel_jobs_lost"), 0.0);
    pool.stop().await;
    n.terminate().await;
    h.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_head_whose_default_dashboard_port_is_taken_serves_on_a_free_one() {
    // Held here for the test (or already held by someone else).
    let _taken = std::net::TcpListener::bind(("127.0.0.1", 8265));
    let dir = temp_dir("taken");
    let (h, _line, url) = head(&dir.join("head"), None).await;
    let addr = loopback_of(&url);
    assert_ne!(addr.port(), 8265, "{url}");
    assert!(url.starts_with("http://127.0.0.1:"), "on loopback: {url}");
    let (status, page) = tokio::task::spawn_blocking(move || get(addr, "/", None))
        .await
        .expect("the GET ran");
    assert_eq!(status, 200);
    assert!(page.contains("para||el"));
    h.terminate().await;
    let _ = std::fs::remove_dir_all(&dir);
}
