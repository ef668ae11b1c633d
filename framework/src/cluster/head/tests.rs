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

    async fn stage(&self, path: &Path, host_key: String) -> Staging {
        let copy = LocalCopy {
            host_key,
            path: path.display().to_string(),
        };
        self.head.ask(StageLocal { copy }).await.expect("an answer")
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

/// Whether the head asked for the program to be sent.
fn upload_asked(opened: Opened) -> bool {
    match opened {
        Opened::Ready { upload, .. } => upload,
        Opened::Refused(why) => panic!("refused: {why}"),
    }
}

#[actix_rt::test]
async fn a_copy_staged_on_the_heads_machine_becomes_the_program_only_under_its_own_hash() {
    let dir = std::env::temp_dir().join(format!("parallel-head-stage-{}", Uuid::new_v4()));
    let data = dir.join("head");
    let password = Password::new("stage".into());
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
    std::fs::write(&a, vec![7u8; 300_000]).expect("write a");
    std::fs::write(&b, vec![9u8; 300_000]).expect("write b");
    let (program_a, program_b) = (program_of(&a), program_of(&b));
    let here = crate::id::host_key();

    // Staged and named by its own hash: stored, nothing to send.
    let Staging::Staged(token) = owner.stage(&a, here.clone()).await else {
        panic!("the head on this machine copies the file");
    };
    assert!(!upload_asked(owner.open(&program_a, Some(token)).await));
    assert_eq!(stored(&data), vec![program_a.hash_hex()]);
    assert_eq!(
        std::fs::read(data.join("programs").join(program_a.hash_hex())).expect("read"),
        std::fs::read(&a).expect("read")
    );

    // Named as another program (b's hash for a's bytes): not taken, the
    // copy is gone, and the owner is asked to send b.
    let Staging::Staged(token) = owner.stage(&a, here.clone()).await else {
        panic!("the head on this machine copies the file");
    };
    assert!(upload_asked(owner.open(&program_b, Some(token)).await));
    assert_eq!(stored(&data), vec![program_a.hash_hex()]);

    // No copy: b is asked for; a file on another machine is not copied.
    assert!(matches!(
        owner.stage(&b, "another machine".into()).await,
        Staging::Refused(_)
    ));
    let missing = dir.join("missing.bin");
    assert!(matches!(
        owner.stage(&missing, here.clone()).await,
        Staging::Refused(_)
    ));
    assert_eq!(stored(&data), vec![program_a.hash_hex()]);

    owner.node.shutdown().await;
    head.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
