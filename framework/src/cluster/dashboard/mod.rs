//! The head's web dashboard and Prometheus endpoint, served by one actor,
//! [`DashboardActor`], on the head's node. It owns the HTTP server
//! (actix-web): the server stops when the actor does.
//!
//! - `/`: the dashboard page (one self-contained HTML file: its plots are
//!   SVG drawn in the page, nothing is fetched from the internet);
//! - `/api/cluster`: the [`ClusterView`] as JSON;
//! - `/api/events`: the same, pushed once a second (server-sent events);
//! - `/metrics`: the view as Prometheus text.
//!
//! It listens on `127.0.0.1` unless told otherwise; on any other address
//! every request must carry the dashboard's token (`?token=..` or
//! `Authorization: Bearer ..`), which the head prints in the URL.
//!
//! The actor asks the head for a picture only while someone watches: once
//! a second while an event stream is open, else once per request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, AsyncContext, Handler, WrapFuture};
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::watch;

use crate::cluster::head::{HeadActor, HeadPicture, Watch};
use crate::cluster::usage::{CpuMeter, MailboxRow};
use crate::cluster::view::{ClusterView, HeadView, PeerView};
use crate::id::ActorId;
use crate::remote::Node;

/// The port the dashboard listens on unless told otherwise (Ray's).
pub const DEFAULT_DASHBOARD_PORT: u16 = 8265;
/// How often an open event stream gets a new picture.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long a picture serves further requests (a page reloaded in a loop,
/// several scrapers) before the head is asked again.
pub const REUSE: Duration = Duration::from_millis(250);
/// How long a request waits for the head's picture.
const PICTURE_DEADLINE: Duration = Duration::from_secs(5);

const PAGE: &str = include_str!("page.html");

/// The id of a cluster's dashboard actor.
pub fn dashboard_id() -> ActorId {
    ActorId::named("para||el cluster", "dashboard")
}

/// Where the dashboard listens and with which token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashboardOptions {
    listen: SocketAddr,
    token: Option<String>,
}

impl Default for DashboardOptions {
    /// `127.0.0.1:8265`, no token.
    fn default() -> Self {
        Self::new(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            DEFAULT_DASHBOARD_PORT,
        )))
    }
}

impl DashboardOptions {
    /// The dashboard on `listen` (port 0: any free port). On an address
    /// other than loopback it makes up a token unless given one.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            token: None,
        }
    }

    /// The token requests must carry (on loopback too, once set).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Where it listens.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Why the dashboard did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// Its address is taken or not ours.
    #[error(
        "the dashboard cannot listen on {addr}: {source}; pass another address with --dashboard (port 0 takes any free port), or --no-dashboard"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// A token that cannot go in a URL.
    #[error("a dashboard token must be 16 to 128 letters, digits, '-' or '_'; pick another")]
    BadToken,
}

/// A running dashboard: where to open it.
#[derive(Clone, Debug)]
pub struct DashboardInfo {
    addr: SocketAddr,
    token: Option<String>,
    shown_host: IpAddr,
}

impl DashboardInfo {
    /// The address it listens on (the port resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token requests need, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The URL to open: `http://host:port/`, with `?token=..` when needed.
    pub fn url(&self) -> String {
        let host = SocketAddr::new(self.shown_host, self.addr.port());
        match &self.token {
            Some(t) => format!("http://{host}/?token={t}"),
            None => format!("http://{host}/"),
        }
    }

    /// The URL of `/metrics` (with its token, if any).
    pub fn metrics_url(&self) -> String {
        let host = SocketAddr::new(self.shown_host, self.addr.port());
        match &self.token {
            Some(t) => format!("http://{host}/metrics?token={t}"),
            None => format!("http://{host}/metrics"),
        }
    }
}

/// A fresh [`ClusterView`] (local only).
struct Fresh;

impl actix::Message for Fresh {
    type Result = Option<Arc<ClusterView>>;
}

/// The dashboard's actor (see the module docs).
#[derive(crate::Actor)]
#[actor(name = "parallel::cluster::Dashboard", lifecycle)]
pub struct DashboardActor {
    node: Node,
    head: actix::Addr<HeadActor>,
    join_line: String,
    started: Instant,
    cpu: CpuMeter,
    server: actix_web::dev::ServerHandle,
    /// The newest picture as JSON, for the event streams.
    latest: watch::Sender<Option<Arc<str>>>,
    /// The newest picture and when it was taken: requests within
    /// [`REUSE`] of it get it again instead of asking every node agent.
    last: Option<(Instant, Arc<ClusterView>)>,
    /// A refresh for the event streams is under way (a slow node agent
    /// makes one last longer than [`REFRESH`]: the next waits).
    refreshing: bool,
}

impl Actor for DashboardActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(REFRESH, |act, ctx| {
            // Only while an event stream is open (the server's own
            // receiver is always there).
            if act.latest.receiver_count() > 1 && !act.refreshing {
                act.refreshing = true;
                let fresh = act.picture(ctx);
                ctx.spawn(fresh.map(|view, act, _| {
                    act.refreshing = false;
                    if let Some(view) = view
                        && let Ok(json) = serde_json::to_string(&*view)
                    {
                        act.latest.send_replace(Some(json.into()));
                    }
                }));
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let server = self.server.clone();
        actix::spawn(async move { server.stop(true).await });
    }
}

impl DashboardActor {
    /// Asks the head for its picture and completes it with what this node
    /// knows.
    fn picture(
        &mut self,
        _: &mut actix::Context<Self>,
    ) -> impl actix::ActorFuture<Self, Output = Option<Arc<ClusterView>>> + use<> {
        let ask = self.head.send(Watch);
        async move { tokio::time::timeout(PICTURE_DEADLINE, ask).await.ok()?.ok() }
            .into_actor(self)
            .map(|picture, act, _| {
                let view = Arc::new(act.complete(picture?));
                act.last = Some((Instant::now(), view.clone()));
                Some(view)
            })
    }

    fn complete(&mut self, picture: HeadPicture) -> ClusterView {
        let peers: Vec<crate::transport::Peer> = self.node.peers();
        let mut nodes = picture.nodes;
        for node in &mut nodes {
            if let Some(peer) = peers.iter().find(|p| p.node() == node.node) {
                node.address = Some(peer.remote_addr().to_string());
                node.incarnation = Some(peer.incarnation());
            }
        }
        let mut peer_views: Vec<PeerView> = peers.iter().map(PeerView::of).collect();
        peer_views.sort_by_key(|p| std::cmp::Reverse(p.bytes_sent));
        let (cpu_percent, rss_bytes) = self.cpu.sample(&[std::process::id()]);
        ClusterView {
            head: HeadView {
                node: self.node.id(),
                join_line: self.join_line.clone(),
                uptime_s: self.started.elapsed().as_secs_f64(),
                cpu_percent,
                rss_bytes,
                heartbeat_timeouts: self.node.heartbeat_timeouts(),
            },
            nodes,
            pools: picture.pools,
            rates: picture.rates,
            stream: picture.stream,
            slowest: picture.slowest,
            totals: picture.totals,
            peers: peer_views,
            mailboxes: MailboxRow::deepest(&self.node, 10),
        }
    }
}

impl Handler<Fresh> for DashboardActor {
    type Result = actix::ResponseActFuture<Self, Option<Arc<ClusterView>>>;

    fn handle(&mut self, _: Fresh, ctx: &mut actix::Context<Self>) -> Self::Result {
        if let Some((at, view)) = &self.last
            && at.elapsed() < REUSE
        {
            return Box::pin(actix::fut::ready(Some(view.clone())));
        }
        Box::pin(self.picture(ctx))
    }
}

/// What the HTTP handlers share.
#[derive(Clone)]
struct Shared {
    token: Option<Arc<str>>,
    dashboard: actix::Addr<DashboardActor>,
    latest: watch::Receiver<Option<Arc<str>>>,
}

/// Whether `given` is `token`, in time that does not depend on where they
/// differ.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// The token a request carries: `?token=..` or `Authorization: Bearer ..`.
pub fn request_token<'a>(query: &'a str, authorization: Option<&'a str>) -> Option<&'a str> {
    let from_query = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="));
    from_query.or_else(|| authorization?.strip_prefix("Bearer ").map(str::trim))
}

/// The refusal of a request without the right token (`None`: it may go on).
fn refusal(req: &HttpRequest, shared: &Shared) -> Option<HttpResponse> {
    let token = shared.token.as_ref()?;
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    match request_token(req.query_string(), authorization) {
        Some(given) if same_token(given.as_bytes(), token.as_bytes()) => None,
        _ => Some(HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer"))
            .content_type("text/plain; charset=utf-8")
            .body(
                "this dashboard needs its token: open the URL `parallel head` printed (it ends in ?token=...), \
                 or send `Authorization: Bearer <token>`\n",
            )),
    }
}

async fn fresh(shared: &Shared) -> Result<Arc<ClusterView>, HttpResponse> {
    match shared.dashboard.send(Fresh).await {
        Ok(Some(view)) => Ok(view),
        _ => Err(HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("the head did not answer in time; try again, or check that it runs (`parallel status`)\n")),
    }
}

async fn page(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(refused) = refusal(&req, &shared) {
        return refused;
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(PAGE)
}

async fn cluster(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(refused) = refusal(&req, &shared) {
        return refused;
    }
    match fresh(&shared).await {
        Ok(view) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(&*view),
        Err(refused) => refused,
    }
}

async fn metrics(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(refused) = refusal(&req, &shared) {
        return refused;
    }
    match fresh(&shared).await {
        Ok(view) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(view.to_prometheus()),
        Err(refused) => refused,
    }
}

async fn events(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if let Some(refused) = refusal(&req, &shared) {
        return refused;
    }
    let rx = shared.latest.clone();
    // The first event at once (what is known), then one per new picture.
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let event = match rx.borrow_and_update().clone() {
            Some(json) => format!("data: {json}\n\n"),
            None => ": waiting for the first picture\n\n".to_owned(),
        };
        Some((
            Ok::<_, actix_web::Error>(web::Bytes::from(event)),
            (rx, false),
        ))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(stream)
}

/// Starts the dashboard of the head `head` on `node`: binds its address,
/// then runs the server under a [`DashboardActor`] registered on the node.
pub(crate) fn start(
    node: &Node,
    head: actix::Addr<HeadActor>,
    join_line: String,
    options: DashboardOptions,
) -> Result<DashboardInfo, DashboardError> {
    let listen = options.listen;
    let token = match options.token {
        Some(t) => {
            let fine = (16..=128).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !fine {
                return Err(DashboardError::BadToken);
            }
            Some(t)
        }
        None if listen.ip().is_loopback() => None,
        // Beyond loopback, never without a token.
        None => Some(uuid::Uuid::new_v4().simple().to_string()),
    };
    let bind = |source| DashboardError::Bind {
        addr: listen,
        source,
    };
    let listener = std::net::TcpListener::bind(listen).map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let (latest_tx, latest_rx) = watch::channel(None);
    let dashboard_ctx = actix::Context::<DashboardActor>::new();
    let dashboard = dashboard_ctx.address();
    let shared = Shared {
        token: token.as_deref().map(Arc::from),
        dashboard,
        latest: latest_rx,
    };
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(web::Data::new(shared.clone()))
            .route("/", web::get().to(page))
            .route("/api/cluster", web::get().to(cluster))
            .route("/api/events", web::get().to(events))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(bind)?
    .run();
    let handle = server.handle();
    actix::spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!("the dashboard's server stopped: {e}");
        }
    });
    let actor = DashboardActor {
        node: node.clone(),
        head,
        join_line,
        started: Instant::now(),
        cpu: CpuMeter::default(),
        server: handle,
        latest: latest_tx,
        last: None,
        refreshing: false,
    };
    node.0
        .registry
        .start_in_as(dashboard_id(), actor, dashboard_ctx, node.0.mailbox);
    let shown_host = if addr.ip().is_unspecified() {
        super::start::outward_ip()
    } else {
        addr.ip()
    };
    tracing::info!(%addr, "dashboard listening");
    Ok(DashboardInfo {
        addr,
        token,
        shown_host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_query_or_the_bearer_header() {
        assert_eq!(request_token("token=abc", None), Some("abc"));
        assert_eq!(
            request_token("x=1&token=abc", Some("Bearer zzz")),
            Some("abc")
        );
        assert_eq!(request_token("", Some("Bearer zzz ")), Some("zzz"));
        assert_eq!(request_token("", Some("Basic zzz")), None);
        assert_eq!(request_token("tokens=1", None), None);
    }

    #[test]
    fn tokens_are_compared_whole() {
        assert!(same_token(b"abcdef", b"abcdef"));
        assert!(!same_token(b"abcdeg", b"abcdef"));
        assert!(!same_token(b"abc", b"abcdef"));
        assert!(!same_token(b"", b"abcdef"));
    }

    #[test]
    fn beyond_loopback_the_url_carries_a_token() {
        let info = DashboardInfo {
            addr: "0.0.0.0:8265".parse().unwrap(),
            token: Some("t0k3n-and-more-chars".into()),
            shown_host: "10.1.2.3".parse().unwrap(),
        };
        assert_eq!(
            info.url(),
            "http://10.1.2.3:8265/?token=t0k3n-and-more-chars"
        );
        assert_eq!(
            info.metrics_url(),
            "http://10.1.2.3:8265/metrics?token=t0k3n-and-more-chars"
        );
    }

    #[test]
    fn the_page_needs_nothing_from_the_internet() {
        for needle in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!PAGE.contains(needle), "the page loads {needle}");
        }
        for id in [
            "id=\"nodes\"",
            "id=\"workers\"",
            "id=\"total-done\"",
            "id=\"task-stream\"",
        ] {
            assert!(PAGE.contains(id), "the page lacks {id}");
        }
    }
}
