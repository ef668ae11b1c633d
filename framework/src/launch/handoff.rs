//! Handing an open file to another process of this machine: its
//! descriptor goes over a Unix socket (`SCM_RIGHTS`) with a 16-byte token
//! that says what it is for. The receiver reads the very file the sender
//! opened, and knows that the sender could open it, without either naming
//! a path the other would have to trust. The receiver answers on the same
//! connection ([`reply`], read back by [`read_reply`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Bytes of the token sent with a file.
pub const TOKEN_LEN: usize = 16;

/// The first byte of a reply that carries the hash and length.
const COPIED: u8 = b'K';
/// The first byte of a reply that carries why not (UTF-8).
const REFUSED: u8 = b'E';
/// The most bytes of a reply.
pub const MAX_REPLY: usize = 4096;

/// The reply to a handoff: [`COPIED`], SHA-256 and length (little-endian),
/// or [`REFUSED`] and why (cut to fit [`MAX_REPLY`]).
pub fn reply(outcome: &Result<([u8; 32], u64), String>) -> Vec<u8> {
    match outcome {
        Ok((sha256, len)) => {
            let mut out = Vec::with_capacity(41);
            out.push(COPIED);
            out.extend_from_slice(sha256);
            out.extend_from_slice(&len.to_le_bytes());
            out
        }
        Err(why) => {
            let mut out = vec![REFUSED];
            let mut end = why.len().min(MAX_REPLY - 1);
            while !why.is_char_boundary(end) {
                end -= 1;
            }
            out.extend_from_slice(&why.as_bytes()[..end]);
            out
        }
    }
}

/// A reply read back: the SHA-256 and length of the receiver's copy, or
/// its reason (a malformed reply is one too).
pub fn read_reply(bytes: &[u8]) -> Result<([u8; 32], u64), String> {
    match bytes.split_first() {
        Some((&COPIED, rest)) if rest.len() == 40 => {
            let mut sha256 = [0u8; 32];
            sha256.copy_from_slice(&rest[..32]);
            let mut len = [0u8; 8];
            len.copy_from_slice(&rest[32..]);
            Ok((sha256, u64::from_le_bytes(len)))
        }
        Some((&REFUSED, why)) => Err(String::from_utf8_lossy(why).into_owned()),
        _ => Err(format!(
            "the answer to the handoff is malformed ({} bytes): run the same para||el version on both sides",
            bytes.len()
        )),
    }
}

/// Sends `token` and `file`'s descriptor over `stream`.
pub fn send_file(stream: &UnixStream, token: &[u8; TOKEN_LEN], file: &File) -> io::Result<()> {
    send_fds(stream, token, &[file.as_raw_fd()])
}

/// Sends `token` with the descriptors `fds` (at most four).
fn send_fds(stream: &UnixStream, token: &[u8; TOKEN_LEN], fds: &[libc::c_int]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: token.as_ptr() as *mut libc::c_void,
        iov_len: TOKEN_LEN,
    };
    // A buffer of `CMSG_SPACE(size_of_val(fds))` bytes, aligned for a
    // `cmsghdr`.
    let mut control = [0u64; 6];
    let bytes = std::mem::size_of_val(fds) as u32;
    // SAFETY: `CMSG_SPACE` only computes a size.
    let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
    if fds.len() > 4 || space > std::mem::size_of_val(&control) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "more than four descriptors",
        ));
    }
    // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at `control`, which has room for one header and
    // `fds` (`space` bytes, checked above); `CMSG_FIRSTHDR` is not null for
    // a control buffer that large, and `CMSG_DATA` points inside it, with
    // room for `fds`. `sendmsg` reads `token` (through `iov`) and
    // `control`, both alive for the call.
    let sent = unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(bytes) as _;
        let data = libc::CMSG_DATA(header).cast::<libc::c_int>();
        for (i, fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned(data.add(i), *fd);
        }
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    match sent {
        n if n < 0 => Err(io::Error::last_os_error()),
        n if n as usize == TOKEN_LEN => Ok(()),
        n => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("only {n} of the token's {TOKEN_LEN} bytes were sent"),
        )),
    }
}

/// Receives a token and exactly one descriptor from `stream` (sent by
/// [`send_file`]). Anything else — no descriptor, more than one, a token
/// cut short — is an error, and every descriptor that came is closed.
pub fn recv_file(stream: &UnixStream) -> io::Result<([u8; TOKEN_LEN], File)> {
    let mut token = [0u8; TOKEN_LEN];
    let mut iov = libc::iovec {
        iov_base: token.as_mut_ptr().cast(),
        iov_len: TOKEN_LEN,
    };
    // Room for a few descriptors, so that extra ones are seen (and closed)
    // rather than cut off.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `token` (through `iov`) and `control`, both
    // alive and writable for the call and as large as `msg` says.
    let got = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: the kernel filled `control` with `msg.msg_controllen` bytes
    // of well-formed headers; `CMSG_FIRSTHDR`/`CMSG_NXTHDR` walk only
    // those, and each `SCM_RIGHTS` header's data holds
    // `(cmsg_len - CMSG_LEN(0)) / size_of::<c_int>()` descriptors that are
    // now this process's (each owned once, by `OwnedFd`).
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(header).cast::<libc::c_int>();
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    let invalid = |why| io::Error::new(io::ErrorKind::InvalidData, why);
    // Dropping `fds` closes every descriptor that came.
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > 1 {
        return Err(invalid("more descriptors came than one; none is taken"));
    }
    let fd = fds
        .pop()
        .ok_or_else(|| invalid("no file descriptor came with the token"))?;
    // The rest of a token that came in pieces (the descriptor came with
    // its first byte, so `got` is at least 1).
    (&*stream).read_exact(&mut token[got as usize..])?;
    Ok((token, File::from(fd)))
}

/// Hands `file` over with `token` on the Unix socket with the abstract
/// name `socket` (Linux) and waits up to `patience` for the answer: the
/// SHA-256 and length of what the other side copied, or why not.
pub fn hand_over(
    file: &File,
    token: &[u8; TOKEN_LEN],
    socket: &str,
    patience: std::time::Duration,
) -> Result<([u8; 32], u64), String> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        let failed = |e: io::Error| format!("handing the file over on {socket:?} failed: {e}");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket).map_err(failed)?;
        let stream = UnixStream::connect_addr(&addr).map_err(failed)?;
        stream.set_read_timeout(Some(patience)).map_err(failed)?;
        send_file(&stream, token, file).map_err(failed)?;
        let mut answer = Vec::new();
        (&stream)
            .take(MAX_REPLY as u64)
            .read_to_end(&mut answer)
            .map_err(failed)?;
        read_reply(&answer)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, token, patience);
        Err(format!(
            "no abstract Unix socket {socket:?} here: not Linux"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(bytes: &[u8]) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("parallel-handoff-{}", uuid::Uuid::new_v4()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let file = File::open(&path).unwrap();
        (path, file)
    }

    #[test]
    fn replies_read_back_and_anything_else_is_a_reason() {
        let sha = [9u8; 32];
        assert_eq!(read_reply(&reply(&Ok((sha, 17)))), Ok((sha, 17)));
        assert_eq!(
            read_reply(&reply(&Err("no such token".into()))),
            Err("no such token".into())
        );
        // Cut on a character boundary to fit.
        let long = "é".repeat(MAX_REPLY);
        let bytes = reply(&Err(long));
        assert!(bytes.len() <= MAX_REPLY);
        assert!(read_reply(&bytes).unwrap_err().starts_with('é'));
        for bad in [&b""[..], b"K", &[COPIED; 40], b"Zzz"] {
            assert!(
                read_reply(bad).unwrap_err().contains("malformed"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_file_handed_over_is_read_by_the_receiver_even_once_its_path_is_gone() {
        let (a, b) = UnixStream::pair().unwrap();
        let (path, file) = temp_file(b"the program's bytes");
        send_file(&a, &[7; TOKEN_LEN], &file).unwrap();
        drop(file);
        // The receiver holds the file itself, not a name for it.
        std::fs::remove_file(&path).unwrap();
        let (token, mut got) = recv_file(&b).unwrap();
        assert_eq!(token, [7; TOKEN_LEN]);
        let mut text = String::new();
        got.read_to_string(&mut text).unwrap();
        assert_eq!(text, "the program's bytes");
    }

    #[test]
    fn two_descriptors_are_refused_and_closed() {
        // Two copies of a pipe's writing end: the reading end sees its end
        // only once every copy is closed, the receiver's too.
        let (mut reader, writer) = std::io::pipe().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let fd = writer.as_raw_fd();
        send_fds(&a, &[2; TOKEN_LEN], &[fd, fd]).unwrap();
        drop(writer);
        let err = recv_file(&b).unwrap_err();
        assert!(err.to_string().contains("more descriptors"), "{err}");
        // Read on a thread of its own: with a copy left open it would wait.
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = done.send(reader.read_to_end(&mut rest).map(|_| rest.len()));
        });
        let read = ended.recv_timeout(std::time::Duration::from_secs(10));
        assert!(
            matches!(read, Ok(Ok(0))),
            "a descriptor stayed open: {read:?}"
        );
    }

    #[test]
    fn a_token_without_a_file_or_cut_short_is_refused() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[1; TOKEN_LEN]).unwrap();
        let err = recv_file(&b).unwrap_err();
        assert!(err.to_string().contains("no file descriptor"), "{err}");

        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let err = recv_file(&b).unwrap_err();
        assert!(err.to_string().contains("no file descriptor"), "{err}");
    }
}
