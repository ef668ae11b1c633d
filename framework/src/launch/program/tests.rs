use super::*;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("parallel-program-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list the store")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A made-up program of `bytes` for this platform.
fn program_of(bytes: &[u8]) -> Program {
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    Program {
        sha256,
        len: bytes.len() as u64,
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
    }
}

#[test]
fn sha256_of_a_file_matches_the_known_digest() {
    let dir = TempDir::new();
    let path = dir.0.join("abc");
    fs::write(&path, b"abc").expect("write a temp file");
    let (sum, len) = sha256_file(&path).expect("hash it");
    assert_eq!(len, 3);
    assert_eq!(
        hex(&sum),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn own_hash_equals_hashing_the_file() {
    let (program, path) = Program::own().expect("hash this test binary");
    assert_eq!(path, std::env::current_exe().expect("current_exe"));
    let bytes = fs::read(&path).expect("read this test binary");
    assert_eq!(program, program_of(&bytes));
    assert_eq!(program.hash_hex().len(), 64);
    assert!(
        program
            .hash_hex()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    program.check_platform().expect("built here, runs here");
}

#[test]
fn a_chunked_round_trip_gives_the_same_executable() {
    let dir = TempDir::new();
    let (program, exe) = Program::own().expect("hash this test binary");
    let here = ProgramStore::open(dir.0.join("here")).expect("open a store");
    let there = ProgramStore::open(dir.0.join("there/nested")).expect("open a nested store");
    assert_eq!(there.get(&program.sha256, true).expect("look up"), None);
    here.put_file(&program, &exe).expect("put this test binary");

    // At least three chunks, however small the binary is.
    let step = CHUNK.min(program.len as usize / 3 + 1);
    let mut receiving = there.receive(&program).expect("start receiving");
    let mut offset = 0u64;
    let mut chunks = 0;
    while offset < program.len {
        let chunk = here
            .read_chunk(&program.sha256, offset, step)
            .expect("read a chunk");
        assert!(!chunk.is_empty() && chunk.len() <= step);
        receiving.write(offset, &chunk).expect("write a chunk");
        offset += chunk.len() as u64;
        chunks += 1;
    }
    assert!(chunks >= 3, "{chunks} chunks");
    assert!(
        here.read_chunk(&program.sha256, program.len, step)
            .expect("read at the end")
            .is_empty()
    );
    let path = receiving.finish().expect("finish");

    assert_eq!(path, there.dir().join(program.hash_hex()));
    assert_eq!(
        fs::read(&path).expect("read the copy"),
        fs::read(&exe).expect("read the original")
    );
    let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    assert_eq!(
        there.get(&program.sha256, true).expect("verify"),
        Some(path.clone())
    );
    assert_eq!(entries(there.dir()), vec![program.hash_hex()]);
}

#[test]
fn a_wrong_byte_is_tampered_and_leaves_no_file() {
    let dir = TempDir::new();
    let store = ProgramStore::open(&dir.0).expect("open a store");
    let good: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let program = program_of(&good);
    let mut bad = good.clone();
    bad[4321] ^= 1;

    let mut receiving = store.receive(&program).expect("start receiving");
    for (i, chunk) in bad.chunks(4096).enumerate() {
        receiving.write((i * 4096) as u64, chunk).expect("write");
    }
    match receiving.finish() {
        Err(ProgramError::Tampered { expected, found }) => {
            assert_eq!(expected, program.hash_hex());
            assert_eq!(found, program_of(&bad).hash_hex());
        }
        other => panic!("expected Tampered, got {other:?}"),
    }
    assert!(entries(&dir.0).is_empty(), "{:?}", entries(&dir.0));
    assert_eq!(store.get(&program.sha256, true).expect("look up"), None);

    // A stored file changed later is caught by a verifying get and removed.
    let good_file = dir.0.join("good.bin");
    fs::write(&good_file, &good).expect("write");
    let path = store.put_file(&program, &good_file).expect("put");
    fs::remove_file(&good_file).expect("remove");
    fs::write(&path, &bad).expect("tamper");
    assert_eq!(
        store.get(&program.sha256, false).expect("unverified"),
        Some(path.clone())
    );
    let err = store.get(&program.sha256, true).expect_err("tampered");
    assert!(matches!(err, ProgramError::Tampered { .. }), "{err}");
    assert!(entries(&dir.0).is_empty(), "{:?}", entries(&dir.0));
}

#[test]
fn chunks_out_of_order_or_too_long_are_refused() {
    let dir = TempDir::new();
    let store = ProgramStore::open(&dir.0).expect("open a store");
    let bytes = vec![7u8; 300];
    let program = program_of(&bytes);

    let mut receiving = store.receive(&program).expect("start receiving");
    receiving.write(0, &bytes[..100]).expect("first chunk");
    let err = receiving
        .write(200, &bytes[200..])
        .expect_err("skips a chunk");
    assert!(
        matches!(
            err,
            ProgramError::Offset {
                expected: 100,
                offset: 200,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("in order"), "{err}");
    let err = receiving
        .write(0, &bytes[..100])
        .expect_err("repeats a chunk");
    assert!(matches!(err, ProgramError::Offset { .. }), "{err:?}");
    let err = receiving
        .write(100, &[0u8; 201])
        .expect_err("runs past the end");
    assert!(
        matches!(
            err,
            ProgramError::Length {
                expected: 300,
                received: 301,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(receiving.received(), 100);
    assert_eq!(entries(&dir.0).len(), 1, "the temporary file");
    drop(receiving);
    assert!(entries(&dir.0).is_empty(), "{:?}", entries(&dir.0));

    // Finishing early is a length error and leaves nothing either.
    let mut receiving = store.receive(&program).expect("start receiving");
    receiving.write(0, &bytes[..299]).expect("most of it");
    let err = receiving.finish().expect_err("one byte short");
    assert!(
        matches!(
            err,
            ProgramError::Length {
                expected: 300,
                received: 299,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(entries(&dir.0).is_empty(), "{:?}", entries(&dir.0));
}

#[test]
fn a_missing_program_is_none_or_a_clear_error() {
    let dir = TempDir::new();
    let store = ProgramStore::open(&dir.0).expect("open a store");
    assert_eq!(store.get(&[9; 32], true).expect("look up"), None);
    let err = store.read_chunk(&[9; 32], 0, CHUNK).expect_err("missing");
    assert!(matches!(err, ProgramError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains(&hex(&[9; 32])), "{err}");
}

#[test]
fn the_platform_check_names_both_platforms() {
    let (mut program, _) = Program::own().expect("hash this test binary");
    program.os = "plan9".into();
    let err = program.check_platform().expect_err("not plan9 here");
    match &err {
        ProgramError::Platform {
            program_os,
            program_arch,
            here_os,
            here_arch,
        } => {
            assert_eq!(program_os, "plan9");
            assert_eq!(program_arch, std::env::consts::ARCH);
            assert_eq!(here_os, std::env::consts::OS);
            assert_eq!(here_arch, std::env::consts::ARCH);
        }
        other => panic!("expected Platform, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("plan9/{}", std::env::consts::ARCH)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}/{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
        "{text}"
    );
}

#[test]
fn a_program_round_trips_through_rkyv() {
    let program = program_of(b"a program");
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&program).expect("serialize");
    let back: Program =
        rkyv::from_bytes::<Program, rkyv::rancor::Error>(&bytes).expect("deserialize");
    assert_eq!(back, program);
}

/// A head's store holding a program, a node's (unsynced) store beside it:
/// the stores, the program's bytes, the program and its file at the head.
fn a_head_and_a_node(dir: &TempDir) -> (ProgramStore, ProgramStore, Vec<u8>, Program, PathBuf) {
    let head = ProgramStore::open(dir.0.join("head")).expect("open the head's store");
    let node = ProgramStore::open(dir.0.join("node"))
        .expect("open the node's store")
        .unsynced();
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let program = program_of(&bytes);
    let source = dir.0.join("source.bin");
    fs::write(&source, &bytes).expect("write");
    let at_head = head.put_file(&program, &source).expect("put at the head");
    (head, node, bytes, program, at_head)
}

#[test]
fn a_linked_program_shares_the_file_and_a_wrong_one_leaves_nothing() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new();
    let (head, node, bytes, program, at_head) = a_head_and_a_node(&dir);

    let linked = node.link_stored(&program, &at_head).expect("link");
    assert_eq!(fs::read(&linked).expect("read"), bytes);
    let meta = fs::metadata(&linked).expect("stat");
    assert_eq!(meta.ino(), fs::metadata(&at_head).expect("stat").ino());
    assert_eq!(meta.mode() & 0o777, 0o755);
    assert_eq!(entries(node.dir()), vec![program.hash_hex()]);
    assert_eq!(
        node.get(&program.sha256, true).expect("verify"),
        Some(linked.clone())
    );

    // A file not named by the program's hash, or of another length, is
    // refused; nothing stays.
    let other = program_of(b"another program");
    match node.link_stored(&other, &at_head) {
        Err(ProgramError::Missing { hash, dir }) => {
            assert_eq!(hash, other.hash_hex());
            assert_eq!(dir, head.dir());
        }
        got => panic!("expected Missing, got {got:?}"),
    }
    let short = head.path_of(&other.sha256);
    fs::write(&short, b"too short").expect("write");
    match node.link_stored(&other, &short) {
        Err(ProgramError::Length {
            expected, received, ..
        }) => assert_eq!((expected, received), (other.len, 9)),
        got => panic!("expected Length, got {got:?}"),
    }
    assert_eq!(entries(node.dir()), vec![program.hash_hex()]);
    assert_eq!(fs::read(&at_head).expect("the head's copy"), bytes);
}

#[test]
fn a_linked_program_is_not_read_but_is_hashed_when_taken_again() {
    // The head's file changed in place after the head hashed it: the link
    // takes it as named (its bytes are not read), and the next `get` with
    // `verify` finds it out.
    let dir = TempDir::new();
    let (_head, node, bytes, program, at_head) = a_head_and_a_node(&dir);
    let mut changed = bytes.clone();
    changed[100] ^= 1;
    fs::write(&at_head, &changed).expect("change in place");

    let linked = node.link_stored(&program, &at_head).expect("link");
    assert_eq!(fs::read(&linked).expect("read"), changed);
    match node.get(&program.sha256, true) {
        Err(ProgramError::Tampered { expected, .. }) => assert_eq!(expected, program.hash_hex()),
        got => panic!("expected Tampered, got {got:?}"),
    }
    assert!(entries(node.dir()).is_empty());
}

#[test]
fn a_staged_copy_is_private_until_installed_as_its_program() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new();
    let store = ProgramStore::open(dir.0.join("store"))
        .expect("open")
        .unsynced();
    // Two and a half chunks: the copy and the hash go chunk by chunk.
    let bytes: Vec<u8> = (0..(CHUNK * 5 / 2) as u32)
        .map(|i| (i % 241) as u8)
        .collect();
    let program = program_of(&bytes);
    let source = dir.0.join("source.bin");
    fs::write(&source, &bytes).expect("write");

    let staged = store.stage_file(&source).expect("stage");
    let names = entries(store.dir());
    assert_eq!(names.len(), 1, "one temporary file: {names:?}");
    assert!(names[0].starts_with('.'), "hidden: {names:?}");
    let meta = fs::metadata(store.dir().join(&names[0])).expect("stat");
    assert_eq!(meta.mode() & 0o777, 0o600);
    let path = staged.install(&program).expect("install");
    assert_eq!(path, store.path_of(&program.sha256));
    assert_eq!(fs::read(&path).expect("read"), bytes);
    assert_eq!(fs::metadata(&path).expect("stat").mode() & 0o777, 0o755);
    assert_eq!(entries(store.dir()), vec![program.hash_hex()]);

    // Named as another program: refused, and the copy is gone.
    let mut other_bytes = bytes.clone();
    other_bytes[CHUNK + 1] ^= 1;
    let other = program_of(&other_bytes);
    match store.stage_file(&source).expect("stage").install(&other) {
        Err(ProgramError::Tampered { expected, found }) => {
            assert_eq!(expected, other.hash_hex());
            assert_eq!(found, program.hash_hex());
        }
        got => panic!("expected Tampered, got {got:?}"),
    }
    // Dropped before it is named: gone too.
    drop(store.stage_file(&source).expect("stage"));
    assert_eq!(entries(store.dir()), vec![program.hash_hex()]);
}

#[test]
fn an_unsynced_store_receives_the_same_program() {
    let dir = TempDir::new();
    let store = ProgramStore::open(&dir.0).expect("open").unsynced();
    let bytes: Vec<u8> = (0..9_000u32).map(|i| (i % 249) as u8).collect();
    let program = program_of(&bytes);
    let mut receiving = store.receive(&program).expect("start receiving");
    for (i, chunk) in bytes.chunks(4096).enumerate() {
        receiving.write((i * 4096) as u64, chunk).expect("write");
    }
    let path = receiving.finish().expect("finish");
    assert_eq!(fs::read(&path).expect("read"), bytes);
    assert_eq!(
        store.get(&program.sha256, true).expect("verify"),
        Some(path)
    );
}

#[test]
fn an_unsynced_store_hashes_a_stored_file_before_taking_it_again() {
    let dir = TempDir::new();
    let store = ProgramStore::open(dir.0.join("store"))
        .expect("open")
        .unsynced();
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 247) as u8).collect();
    let program = program_of(&bytes);
    let source = dir.0.join("source.bin");
    fs::write(&source, &bytes).expect("write");
    let path = store.put_file(&program, &source).expect("put");
    // Torn by a crash (not flushed): the next put copies it again.
    fs::write(&path, &bytes[..100]).expect("tear");
    let again = store.put_file(&program, &source).expect("put again");
    assert_eq!(fs::read(&again).expect("read"), bytes);
    // A synced store takes its own files as they are.
    let synced = ProgramStore::open(dir.0.join("synced")).expect("open");
    let kept = synced.put_file(&program, &source).expect("put");
    fs::write(&kept, b"changed").expect("change");
    assert_eq!(synced.put_file(&program, &source).expect("put"), kept);
    assert_eq!(fs::read(&kept).expect("read"), b"changed");
}
