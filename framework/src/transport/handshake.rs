//! The join handshake on the control lane:
//!
//! ```text
//! connector                                  listener
//!   Hello { node, join_line, nonce,    ──▶   refuse a fenced (node, incarnation)
//!           incarnation }
//!                                      ◀──   Challenge { node, join_line, nonce, incarnation }
//!   refuse a fenced (node, incarnation)
//!   Proof { mac(client label) }        ──▶   verify (constant time)
//!                                      ◀──   Welcome { mac(server label) }  or  Refuse { reason }
//!   verify the listener's mac
//! ```
//!
//! Both MACs cover both nonces, both node ids and TLS exporter material
//! (see [`super::auth`]); the password itself never travels.

use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};

use crate::id::NodeId;
use crate::wire::{
    self, Buffer, Challenge, FrameError, FrameHeader, FrameKind, Hello, Proof, Refuse, Welcome,
    WireType,
};

use super::auth::{self, EXPORTER_LABEL, Role, Transcript};
use super::error::ConnectError;
use super::fence::{FENCED, Fences};
use super::framing::{CONTROL_MAX_FRAME, ReadFrameError, close_code, read_frame, write_msg};
use super::join_line::JoinLine;
use super::password::Password;

/// Start of the refusal sent for a wrong password.
const WRONG_PASSWORD: &str = "wrong cluster password";
/// Start of the refusal sent when the pair is already connected.
pub(crate) const DUPLICATE: &str = "duplicate connection";
/// Pause before refusing a wrong password, to slow down guessing.
const REFUSE_DELAY: Duration = Duration::from_millis(200);

/// What the other side proved about itself.
#[derive(Debug)]
pub(crate) struct Joined {
    /// Its node id.
    pub node: NodeId,
    /// Its own join line, if it sent a readable one.
    pub join_line: Option<JoinLine>,
    /// Its incarnation.
    pub incarnation: u64,
}

fn parse_line(node: NodeId, text: &str) -> Option<JoinLine> {
    if text.is_empty() {
        return None;
    }
    match text.parse() {
        Ok(line) => Some(line),
        Err(e) => {
            tracing::warn!(peer = %node, "ignoring the peer's join line: {e}");
            None
        }
    }
}

fn exporter(conn: &Connection) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
        .map_err(|_| "cannot export TLS keying material".to_owned())?;
    Ok(out)
}

fn expect<T: WireType>(frame: (FrameHeader, Buffer), kind: FrameKind) -> Result<T, String> {
    let (header, payload) = frame;
    if header.kind != kind {
        return Err(format!("expected a {kind:?} frame, got {:?}", header.kind));
    }
    wire::decode_owned::<T>(&payload).map_err(|e| e.to_string())
}

/// Who we are in a handshake.
pub(crate) struct Me<'a> {
    /// Our node id.
    pub node: NodeId,
    /// Our incarnation.
    pub incarnation: u64,
    /// Our join line, as text.
    pub line: &'a str,
    /// The cluster password.
    pub password: &'a Password,
    /// Incarnations we declared dead, and nodes that declared us dead.
    pub fences: &'a Fences,
}

/// The connecting side. `send` has just been opened by us; `line` is the
/// join line we dialed.
pub(crate) async fn connect(
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    me: &Me<'_>,
    line: &JoinLine,
) -> Result<Joined, ConnectError> {
    let fenced_us = |e: ConnectError| {
        if let ConnectError::Fenced(why) = &e {
            me.fences
                .fenced_by(Some(line), conn.remote_address(), why.clone());
        }
        e
    };
    let (password, my_line) = (me.password, me.line);
    let me_node = me.node;
    let io = ConnectError::Io;
    let hello_nonce = auth::nonce().map_err(|_| io("no secure random numbers".to_owned()))?;
    let hello = Hello {
        node: me_node,
        join_line: my_line.to_owned(),
        nonce: hello_nonce,
        incarnation: me.incarnation,
    };
    write_msg(send, FrameKind::Hello, &hello)
        .await
        .map_err(io)?;

    let challenge: Challenge = expect(
        answer(conn, recv).await.map_err(fenced_us)?,
        FrameKind::Challenge,
    )
    .map_err(ConnectError::Protocol)?;
    if challenge.node == me_node {
        conn.close(close_code::REFUSED.into(), b"connected to itself");
        return Err(ConnectError::SelfConnect);
    }
    if let Some(why) = me.fences.check(challenge.node, challenge.incarnation) {
        tracing::warn!(peer = %challenge.node, incarnation = challenge.incarnation, "not joining a node we declared dead");
        conn.close(close_code::REFUSED.into(), why.as_bytes());
        return Err(ConnectError::Fenced(why));
    }
    let transcript = Transcript {
        hello_nonce,
        challenge_nonce: challenge.nonce,
        connector: me_node,
        listener: challenge.node,
        exporter: exporter(conn).map_err(io)?,
    };
    let proof = Proof {
        mac: auth::sign(password.as_bytes(), Role::Client, &transcript),
    };
    write_msg(send, FrameKind::Proof, &proof)
        .await
        .map_err(io)?;

    let welcome: Welcome = expect(
        answer(conn, recv).await.map_err(fenced_us)?,
        FrameKind::Welcome,
    )
    .map_err(ConnectError::Protocol)?;
    if !auth::verify(password.as_bytes(), Role::Server, &transcript, &welcome.mac) {
        conn.close(
            close_code::REFUSED.into(),
            b"the listener could not prove the cluster password",
        );
        return Err(ConnectError::ListenerProof);
    }
    Ok(Joined {
        node: challenge.node,
        join_line: parse_line(challenge.node, &challenge.join_line),
        incarnation: challenge.incarnation,
    })
}

/// Reads the listener's next frame, turning a `Refuse` into the matching error.
async fn answer(
    conn: &Connection,
    recv: &mut RecvStream,
) -> Result<(FrameHeader, Buffer), ConnectError> {
    let frame = match read_frame(recv, CONTROL_MAX_FRAME).await {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            return Err(ConnectError::Protocol(
                "the listener closed the control lane".to_owned(),
            ));
        }
        Err(ReadFrameError::Header(
            e @ (FrameError::Version { .. } | FrameError::Format { .. }),
        )) => {
            conn.close(close_code::REFUSED.into(), e.to_string().as_bytes());
            return Err(ConnectError::VersionMismatch(e.to_string()));
        }
        Err(ReadFrameError::Header(e)) => return Err(ConnectError::Protocol(e.to_string())),
        Err(ReadFrameError::Protocol(why)) => return Err(ConnectError::Protocol(why)),
        Err(ReadFrameError::Lost(reason)) => return Err(ConnectError::Io(reason.to_string())),
    };
    if frame.0.kind != FrameKind::Refuse {
        return Ok(frame);
    }
    let reason = wire::decode_owned::<Refuse>(&frame.1)
        .map(|r| r.reason)
        .unwrap_or_else(|e| format!("unreadable refusal: {e}"));
    conn.close(close_code::REFUSED.into(), b"refused");
    Err(if reason.starts_with(WRONG_PASSWORD) {
        ConnectError::WrongPassword(reason)
    } else if reason.starts_with(FENCED) {
        ConnectError::Fenced(reason)
    } else if reason.contains("wire version") || reason.contains("archive format") {
        ConnectError::VersionMismatch(reason)
    } else {
        ConnectError::Refused(reason)
    })
}

/// Why the listening side stopped.
#[derive(Debug)]
pub(crate) enum ListenError {
    /// We refused the connector (and told it why).
    Refused(String),
    /// The connection failed.
    Lost(String),
}

/// The listener's verdict before `Welcome`: who the connector is, and the
/// MAC to send back once it is admitted.
#[derive(Debug)]
pub(crate) struct Verified {
    /// The connector.
    pub joined: Joined,
    /// Our `Welcome` MAC.
    pub welcome: Welcome,
}

/// The listening side, up to and including the check of the proof.
pub(crate) async fn listen(
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    me: &Me<'_>,
) -> Result<Verified, ListenError> {
    let (password, my_line) = (me.password, me.line);
    let fences = me.fences;
    let me_incarnation = me.incarnation;
    let me = me.node;
    let hello: Hello = match request(recv).await? {
        Ok(frame) => match expect(frame, FrameKind::Hello) {
            Ok(hello) => hello,
            Err(why) => return Err(refuse(conn, send, why).await),
        },
        Err(why) => return Err(refuse(conn, send, why).await),
    };
    if hello.node == me {
        return Err(refuse(conn, send, "a node cannot join itself".to_owned()).await);
    }
    if let Some(why) = fences.check(hello.node, hello.incarnation) {
        tracing::warn!(peer = %hello.node, incarnation = hello.incarnation, addr = %conn.remote_address(), "join refused: that incarnation was declared dead");
        return Err(refuse(conn, send, why).await);
    }
    let challenge_nonce =
        auth::nonce().map_err(|_| ListenError::Lost("no secure random numbers".to_owned()))?;
    let challenge = Challenge {
        node: me,
        join_line: my_line.to_owned(),
        nonce: challenge_nonce,
        incarnation: me_incarnation,
    };
    write_msg(send, FrameKind::Challenge, &challenge)
        .await
        .map_err(ListenError::Lost)?;

    let proof: Proof = match request(recv).await? {
        Ok(frame) => match expect(frame, FrameKind::Proof) {
            Ok(proof) => proof,
            Err(why) => return Err(refuse(conn, send, why).await),
        },
        Err(why) => return Err(refuse(conn, send, why).await),
    };
    let transcript = Transcript {
        hello_nonce: hello.nonce,
        challenge_nonce,
        connector: hello.node,
        listener: me,
        exporter: exporter(conn).map_err(ListenError::Lost)?,
    };
    if !auth::verify(password.as_bytes(), Role::Client, &transcript, &proof.mac) {
        tracing::warn!(peer = %hello.node, addr = %conn.remote_address(), "join refused: wrong cluster password");
        tokio::time::sleep(REFUSE_DELAY).await;
        let why = format!(
            "{WRONG_PASSWORD}: this node ({me}) could not verify the proof; give both nodes the same PARALLEL_PASSWORD or PARALLEL_PASSWORD_FILE"
        );
        return Err(refuse(conn, send, why).await);
    }
    let welcome = Welcome {
        mac: auth::sign(password.as_bytes(), Role::Server, &transcript),
    };
    Ok(Verified {
        joined: Joined {
            node: hello.node,
            join_line: parse_line(hello.node, &hello.join_line),
            incarnation: hello.incarnation,
        },
        welcome,
    })
}

/// Reads the connector's next frame: the outer error means the connection
/// failed, the inner one is a reason to refuse it.
async fn request(
    recv: &mut RecvStream,
) -> Result<Result<(FrameHeader, Buffer), String>, ListenError> {
    match read_frame(recv, CONTROL_MAX_FRAME).await {
        Ok(Some(frame)) => Ok(Ok(frame)),
        Ok(None) => Err(ListenError::Lost(
            "the connector closed the control lane".to_owned(),
        )),
        Err(ReadFrameError::Header(e)) => Ok(Err(e.to_string())),
        Err(ReadFrameError::Protocol(why)) => Ok(Err(why)),
        Err(ReadFrameError::Lost(reason)) => Err(ListenError::Lost(reason.to_string())),
    }
}

/// Sends `Refuse { reason }`, gives the other side a moment to read it, and
/// closes the connection.
pub(crate) async fn refuse(
    conn: &Connection,
    send: &mut SendStream,
    reason: String,
) -> ListenError {
    let _ = write_msg(
        send,
        FrameKind::Refuse,
        &Refuse {
            reason: reason.clone(),
        },
    )
    .await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
    conn.close(close_code::REFUSED.into(), reason.as_bytes());
    ListenError::Refused(reason)
}
