use std::path::Path;
use std::time::Duration;

use super::*;
use crate::cluster::{HeadOptions, start_head};
use crate::remote::Node;
use crate::transport::Password;

/// How long one ask to the head may take in these tests.
const ASK: Duration = Duration::from_secs(20);

/// The program in the file at `path`, as its owner would name it.
fn program_of(path: &Path) -> Program {
    Program::of_file(path).expect("hash the file")
}

/// The files in the head's program store, sorted.
fn stored(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("programs"))
        .expect("list the store")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A pool owner on this program's side of the test, and the head there.
struct Owner {
    node: Node,
    head: ActorRef<HeadActor>,
    owner: ActorRef<PoolOwner>,
}

impl Owner {
    async fn join(line: &crate::transport::JoinLine, password: Password) -> Owner {
        let node = Node::builder()
            .password(password)
            .start()
            .await
            .expect("a node");
        let remote = tokio::time::timeout(ASK, node.join(line))
            .await
            .expect("joined in time")
            .expect("joined");
        let head = ActorRef::remote(head_id(), remote.link()).with_timeout(ASK);
        let (results, _) = tokio::sync::mpsc::unbounded_channel();
        let owner = node.spawn(PoolOwner { results });
        Owner { node, head, owner }
    }

    async fn stage(&self, host_key: String) -> Staging {
        self.head
            .ask(StageLocal { host_key })
            .await
            .expect("an answer")
    }

    /// Asks to stage, hands `path` over with the token it got (or `token`
    /// instead, if given): the token, and the head's answer.
    async fn hand_over(
        &self,
        path: &Path,
        token: Option<Uuid>,
    ) -> (Uuid, Result<([u8; 32], u64), String>) {
        let Staging::Handoff {
            token: given,
            socket,
        } = self.stage(crate::id::host_key()).await
        else {
            panic!("the head on this machine takes the file");
        };
        let token = token.unwrap_or(given);
        let file = std::fs::File::open(path).expect("open the file");
        let answer = tokio::task::spawn_blocking(move || {
            crate::launch::handoff::hand_over(&file, token.as_bytes(), &socket, ASK)
        })
        .await
        .expect("handed over");
        (token, answer)
    }

    async fn open(&self, program: &Program, staged: Option<Uuid>) -> Opened {
        let msg = OpenPool {
            program: program.clone(),
            kind: "test".into(),
            init: Vec::new(),
            owner: self.owner.clone(),
            resume: None,
            staged,
        };
        self.head.ask(msg).await.expect("an answer")
    }
}

/// A head on a fresh data directory, a pool owner joined to it, and two
/// files of 300,000 bytes (all `fill_a`, all `fill_b`) in a temporary
/// directory.
struct Setup {
    dir: std::path::PathBuf,
    data: std::path::PathBuf,
    head: crate::cluster::HeadHandle,
    owner: Owner,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
}

impl Setup {
    async fn start(fill_a: u8, fill_b: u8) -> Setup {
        let dir = std::env::temp_dir().join(format!("parallel-head-test-{}", Uuid::new_v4()));
        let data = dir.join("head");
        let password = Password::new("head test".into());
        let head = start_head(
            HeadOptions::new(password.clone())
                .listen(([127, 0, 0, 1], 0).into())
                .data(&data),
        )
        .await
        .expect("a head");
        let owner = Owner::join(&head.join_line(), password).await;
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let (a, b) = (dir.join("a.bin"), dir.join("b.bin"));
        std::fs::write(&a, vec![fill_a; 300_000]).expect("write a");
        std::fs::write(&b, vec![fill_b; 300_000]).expect("write b");
        Setup {
            dir,
            data,
            head,
            owner,
            a,
            b,
        }
    }
}

/// Whether the head asked for the program to be sent.
fn upload_asked(opened: Opened) -> bool {
    match opened {
        Opened::Ready { upload, .. } => upload,
        Opened::Refused(why) => panic!("refused: {why}"),
    }
}

#[actix_rt::test]
async fn a_copy_staged_on_the_heads_machine_becomes_the_program_only_under_its_own_hash() {
    let Setup {
        dir,
        data,
        head,
        owner,
        a,
        b,
    } = Setup::start(7, 9).await;
    let (program_a, program_b) = (program_of(&a), program_of(&b));

    // Handed over and named by the hash the head found: stored, nothing
    // to send.
    let (token, answer) = owner.hand_over(&a, None).await;
    assert_eq!(answer, Ok((program_a.sha256, program_a.len)));
    assert!(!upload_asked(owner.open(&program_a, Some(token)).await));
    assert_eq!(stored(&data), vec![program_a.hash_hex()]);
    assert_eq!(
        std::fs::read(data.join("programs").join(program_a.hash_hex())).expect("read"),
        std::fs::read(&a).expect("read")
    );

    // Named as another program (b's hash for a's bytes): not taken, the
    // copy is gone, and the owner is asked to send b.
    let (token, answer) = owner.hand_over(&a, None).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert!(upload_asked(owner.open(&program_b, Some(token)).await));
    assert_eq!(stored(&data), vec![program_a.hash_hex()]);

    // A token no pool was given, or one used already, takes no file; nor
    // does one that is no regular file; an owner on another machine gets
    // no token.
    let (_, answer) = owner.hand_over(&b, Some(Uuid::new_v4())).await;
    assert!(answer.unwrap_err().contains("no pool was told this token"));
    let (token, answer) = owner.hand_over(&b, None).await;
    assert!(answer.is_ok(), "{answer:?}");
    let (_, again) = owner.hand_over(&b, Some(token)).await;
    assert!(again.unwrap_err().contains("no pool was told this token"));
    let (_, answer) = owner.hand_over(&dir, None).await;
    assert!(answer.unwrap_err().contains("not a regular file"));
    assert!(matches!(
        owner.stage("another machine".into()).await,
        Staging::Refused(_)
    ));
    // b's copy waits, hidden, for a pool to name it (a minute at most).
    let (hidden, named): (Vec<String>, Vec<String>) = stored(&data)
        .into_iter()
        .partition(|n| n.starts_with(".staged"));
    assert_eq!(named, vec![program_a.hash_hex()]);
    assert_eq!(hidden.len(), 1, "{hidden:?}");

    owner.node.shutdown().await;
    head.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_program_the_head_asks_for_is_taken_from_a_copy_handed_over_only_if_it_is_that_program() {
    let Setup {
        dir,
        data,
        head,
        owner,
        a,
        b,
    } = Setup::start(3, 4).await;
    let program_b = program_of(&b);
    let upload = |program: &Program, staged: Uuid| {
        owner.head.ask(UploadLocal {
            program: program.clone(),
            staged,
        })
    };

    // Opened without a copy: the head asks for the program.
    assert!(upload_asked(owner.open(&program_b, None).await));
    // A copy of a's bytes is not b: refused, nothing stored.
    let (token, _) = owner.hand_over(&a, None).await;
    let refused = upload(&program_b, token).await.expect("an answer");
    assert!(
        matches!(&refused, Uploaded::Refused(why) if why.contains("not this program")),
        "{refused:?}"
    );
    assert!(stored(&data).iter().all(|n| n.starts_with(".staged")));
    // b's own copy is taken; its token is good once.
    let (token, _) = owner.hand_over(&b, None).await;
    assert_eq!(
        upload(&program_b, token).await.expect("an answer"),
        Uploaded::Stored
    );
    assert_eq!(stored(&data), vec![program_b.hash_hex()]);
    assert!(matches!(
        upload(&program_b, token).await.expect("an answer"),
        Uploaded::Refused(_)
    ));

    owner.node.shutdown().await;
    head.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
