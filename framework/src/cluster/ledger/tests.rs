use super::*;

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("parallel-ledger-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const A: PoolKey = [1; 16];
const B: PoolKey = [2; 16];

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn put_pool(pool: PoolKey) -> LedgerOp {
    LedgerOp::PutPool {
        pool,
        record: vec![pool[0]],
    }
}

fn accept(pool: PoolKey, index: u64) -> LedgerOp {
    LedgerOp::AcceptJob {
        pool,
        index,
        job: index.to_le_bytes().to_vec(),
    }
}

fn finish(pool: PoolKey, index: u64, result: &[u8]) -> LedgerOp {
    LedgerOp::FinishJob {
        pool,
        index,
        result: result.to_vec(),
    }
}

fn update(pool: PoolKey, seq: u64) -> LedgerOp {
    LedgerOp::PutUpdate {
        pool,
        seq,
        update: seq.to_le_bytes().to_vec(),
    }
}

fn indices(rows: &[(u64, Vec<u8>)]) -> Vec<u64> {
    rows.iter().map(|(i, _)| *i).collect()
}

#[test]
fn what_was_written_is_there_after_the_ledger_is_opened_again() {
    let dir = TempDir::new();
    {
        let ledger = Ledger::open(&dir.0).unwrap();
        block(ledger.write(vec![
            put_pool(A),
            accept(A, 2),
            accept(A, 1),
            accept(A, 3),
            finish(A, 3, b"nine"),
            update(A, 1),
        ]))
        .unwrap();
        // Queued but not awaited: dropping the ledger still commits it.
        drop(ledger.write(vec![accept(A, 4)]));
    }
    // The writer has let the file go: it opens again at once.
    let ledger = Ledger::open(&dir.0).unwrap();
    let pools = ledger.load().unwrap();
    assert_eq!(pools.len(), 1);
    let a = &pools[0];
    assert_eq!(a.pool, A);
    assert_eq!(a.record, vec![1]);
    assert_eq!(indices(&a.jobs), vec![1, 2, 4]);
    assert_eq!(a.jobs[0].1, 1u64.to_le_bytes());
    assert_eq!(a.results, vec![(3, b"nine".to_vec())]);
    assert_eq!(a.updates, vec![(1, 1u64.to_le_bytes().to_vec())]);
}

#[test]
fn a_new_ledger_is_new_until_it_is_opened_again_and_keeps_what_was_written() {
    let dir = TempDir::new();
    {
        let ledger = Ledger::open(&dir.0).unwrap();
        assert!(ledger.is_new());
        // Loads wait for the writer to have made the database.
        assert!(ledger.load().unwrap().is_empty());
        block(ledger.write(vec![put_pool(A), accept(A, 0)])).unwrap();
        assert_eq!(indices(&ledger.load().unwrap()[0].jobs), vec![0]);
    }
    let ledger = Ledger::open(&dir.0).unwrap();
    assert!(!ledger.is_new());
    assert_eq!(indices(&ledger.load().unwrap()[0].jobs), vec![0]);
}

#[test]
fn an_empty_file_is_made_a_new_ledger_and_a_foreign_one_is_refused_at_once() {
    // A head killed after the file was made and before the database was.
    let dir = TempDir::new();
    std::fs::write(dir.0.join(FILE_NAME), b"").unwrap();
    let ledger = Ledger::open(&dir.0).unwrap();
    assert!(ledger.is_new());
    block(ledger.write(vec![put_pool(B)])).unwrap();
    assert_eq!(ledger.load().unwrap()[0].pool, B);
    drop(ledger);
    // A file that is no ledger is not written over.
    let other = TempDir::new();
    std::fs::write(other.0.join(FILE_NAME), b"not a redb file, and not empty").unwrap();
    let err = Ledger::open(&other.0).unwrap_err();
    assert!(matches!(err, LedgerError::Open { .. }), "{err}");
    assert!(err.to_string().contains("move it away"), "{err}");
    assert_eq!(
        std::fs::read(other.0.join(FILE_NAME)).unwrap(),
        b"not a redb file, and not empty"
    );
}

#[test]
fn a_second_open_of_the_same_file_says_it_is_in_use() {
    let dir = TempDir::new();
    let _ledger = Ledger::open(&dir.0).unwrap();
    let err = Ledger::open(&dir.0).unwrap_err();
    assert!(matches!(err, LedgerError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("another data directory"), "{err}");
}

#[test]
fn a_late_duplicate_never_overwrites_a_result_nor_brings_a_job_back() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    block(ledger.write(vec![
        put_pool(A),
        accept(A, 5),
        finish(A, 5, b"first"),
        finish(A, 5, b"second"),
        accept(A, 5),
    ]))
    .unwrap();
    // In another transaction too.
    block(ledger.write(vec![finish(A, 5, b"third")])).unwrap();
    let a = &ledger.load().unwrap()[0];
    assert_eq!(a.results, vec![(5, b"first".to_vec())]);
    assert!(a.jobs.is_empty(), "a finished job is not accepted again");

    block(ledger.write(vec![LedgerOp::ResultRead { pool: A, index: 5 }])).unwrap();
    // Neither a job that was never accepted nor one whose result was read.
    block(ledger.write(vec![finish(A, 5, b"late"), finish(A, 6, b"stray")])).unwrap();
    let a = &ledger.load().unwrap()[0];
    assert!(a.results.is_empty(), "{:?}", a.results);
    assert!(a.jobs.is_empty());
}

#[test]
fn removing_a_pool_removes_all_of_it_and_nothing_of_another() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    let mut ops = Vec::new();
    for pool in [A, B] {
        ops.extend([put_pool(pool), update(pool, 1), update(pool, u64::MAX)]);
        for index in [0, 1, 2, u64::MAX] {
            ops.push(accept(pool, index));
        }
        ops.extend([finish(pool, 1, b"r"), finish(pool, u64::MAX, b"r")]);
    }
    block(ledger.write(ops)).unwrap();
    block(ledger.write(vec![LedgerOp::RemovePool { pool: A }])).unwrap();

    let pools = ledger.load().unwrap();
    assert_eq!(pools.len(), 1);
    let b = &pools[0];
    assert_eq!(b.pool, B);
    assert_eq!(indices(&b.jobs), vec![0, 2]);
    assert_eq!(indices(&b.results), vec![1, u64::MAX]);
    assert_eq!(indices(&b.updates), vec![1, u64::MAX]);
    // Nothing of A is left in any table, not only hidden by its record.
    let txn = ledger.db().unwrap().begin_read().unwrap();
    assert_eq!(txn.open_table(WORK).unwrap().len().unwrap(), 4);
    assert_eq!(txn.open_table(UPDATES).unwrap().len().unwrap(), 2);
    assert_eq!(txn.open_table(POOLS).unwrap().len().unwrap(), 1);
}

#[test]
fn a_finished_job_keeps_one_row_and_reading_its_result_removes_it() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    block(ledger.write(vec![put_pool(A), accept(A, 0), accept(A, 1)])).unwrap();
    block(ledger.write(vec![finish(A, 0, b"r0")])).unwrap();
    let rows = || {
        let txn = ledger.db().unwrap().begin_read().unwrap();
        txn.open_table(WORK).unwrap().len().unwrap()
    };
    // The result took the job's row: two rows for two jobs.
    assert_eq!(rows(), 2);
    // Reading a pending job's "result" leaves the job; reading a result removes it.
    block(ledger.write(vec![
        LedgerOp::ResultRead { pool: A, index: 1 },
        LedgerOp::ResultRead { pool: A, index: 0 },
    ]))
    .unwrap();
    assert_eq!(rows(), 1);
    let a = &ledger.load().unwrap()[0];
    assert_eq!(a.jobs, vec![(1, 1u64.to_le_bytes().to_vec())]);
    assert!(a.results.is_empty());
}

#[test]
fn a_ledger_written_with_separate_job_and_result_tables_is_moved_into_one() {
    let dir = TempDir::new();
    {
        // The tables as a ledger of before wrote them.
        let db = Database::builder()
            .create_with_file_format_v3(true)
            .create(dir.0.join(FILE_NAME))
            .unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(POOLS)
            .unwrap()
            .insert(key(&A, 0).as_slice(), b"record".as_slice())
            .unwrap();
        let mut jobs = txn.open_table(OLD_JOBS).unwrap();
        jobs.insert(key(&A, 2).as_slice(), b"job2".as_slice())
            .unwrap();
        jobs.insert(key(&A, 3).as_slice(), b"job3".as_slice())
            .unwrap();
        drop(jobs);
        txn.open_table(OLD_RESULTS)
            .unwrap()
            .insert(key(&A, 1).as_slice(), b"result1".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let ledger = Ledger::open(&dir.0).unwrap();
    let a = &ledger.load().unwrap()[0];
    assert_eq!(a.jobs, vec![(2, b"job2".to_vec()), (3, b"job3".to_vec())]);
    assert_eq!(a.results, vec![(1, b"result1".to_vec())]);
    // The old tables are gone, and the moved rows behave like any.
    let txn = ledger.db().unwrap().begin_read().unwrap();
    let names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n == "jobs" || n == "results"),
        "{names:?}"
    );
    drop(txn);
    block(ledger.write(vec![
        finish(A, 2, b"r2"),
        LedgerOp::ResultRead { pool: A, index: 1 },
    ]))
    .unwrap();
    let a = &ledger.load().unwrap()[0];
    assert_eq!(a.jobs, vec![(3, b"job3".to_vec())]);
    assert_eq!(a.results, vec![(2, b"r2".to_vec())]);
}

#[test]
fn a_row_of_no_known_kind_is_a_read_error_that_says_what_to_do() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    block(ledger.write(vec![put_pool(A)])).unwrap();
    {
        let txn = ledger.db().unwrap().begin_write().unwrap();
        txn.open_table(WORK)
            .unwrap()
            .insert(key(&A, 5).as_slice(), [9u8, 1, 2].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    match ledger.load() {
        Err(LedgerError::Read(why)) => assert!(why.contains("move it away"), "{why}"),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn load_returns_pools_in_key_order_and_rows_in_number_order() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    // Numbers whose little-endian bytes sort differently from the numbers.
    let numbers = [1u64 << 40, 256, 0, 255, 1 << 8 | 1, u64::MAX, 65_536];
    let mut sorted = numbers.to_vec();
    sorted.sort();
    let mut ops = vec![put_pool(B), put_pool(A)];
    for pool in [B, A] {
        for &n in &numbers {
            ops.extend([accept(pool, n), update(pool, n)]);
        }
        // Finishing in a shuffled order still loads in index order.
        for &n in numbers.iter().rev().take(3) {
            ops.push(finish(pool, n, &n.to_be_bytes()));
        }
    }
    block(ledger.write(ops)).unwrap();
    // Rows of a pool without a record are not loaded.
    block(ledger.write(vec![accept([9; 16], 0)])).unwrap();

    let pools = ledger.load().unwrap();
    assert_eq!(pools.iter().map(|p| p.pool).collect::<Vec<_>>(), vec![A, B]);
    let finished: Vec<u64> = numbers.iter().rev().take(3).copied().collect();
    let mut results = finished.clone();
    results.sort();
    let pending: Vec<u64> = sorted
        .iter()
        .copied()
        .filter(|n| !finished.contains(n))
        .collect();
    for pool in &pools {
        assert_eq!(indices(&pool.jobs), pending);
        assert_eq!(indices(&pool.results), results);
        assert_eq!(indices(&pool.updates), sorted);
        for (n, result) in &pool.results {
            assert_eq!(result, &n.to_be_bytes());
        }
    }
}

#[test]
fn an_empty_write_resolves_after_what_was_queued_before_it() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    let before = ledger.commits();
    let first = ledger.write(vec![put_pool(A), accept(A, 1)]);
    block(ledger.write(Vec::new())).unwrap();
    assert_eq!(ledger.load().unwrap()[0].jobs.len(), 1);
    block(first).unwrap();
    block(ledger.write(Vec::new())).unwrap();
    assert_eq!(
        ledger.commits() - before,
        1,
        "an empty write commits nothing"
    );
}

#[test]
fn many_concurrent_writes_share_few_commits() {
    const WRITERS: u64 = 100;
    const EACH: u64 = 100;
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    block(ledger.write(vec![put_pool(A)])).unwrap();
    let before = ledger.commits();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let ledger = ledger.clone();
            tasks.spawn(async move {
                for i in 0..EACH {
                    ledger.write(vec![accept(A, w * EACH + i)]).await.unwrap();
                }
            });
        }
        while let Some(task) = tasks.join_next().await {
            task.unwrap();
        }
    });
    let commits = ledger.commits() - before;
    let a = &ledger.load().unwrap()[0];
    assert_eq!(indices(&a.jobs), (0..WRITERS * EACH).collect::<Vec<_>>());
    // Each writer waits for its last write before the next, so a commit
    // holds at most 100 writes: 100 commits at best, 10,000 at worst.
    assert!(
        commits <= WRITERS * EACH / 10,
        "{} writes from {WRITERS} writers took {commits} commits",
        WRITERS * EACH
    );
}

#[test]
fn a_delivered_result_stays_marked_until_it_is_removed() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    block(ledger.write(vec![
        put_pool(A),
        accept(A, 1),
        accept(A, 2),
        finish(A, 1, b"one"),
        finish(A, 2, b"two"),
        // No result 3: no mark either.
        LedgerOp::ResultsDelivered {
            pool: A,
            indices: vec![1, 2, 3],
        },
    ]))
    .unwrap();
    let a = &ledger.load().unwrap()[0];
    assert_eq!(indices(&a.results), vec![1, 2]);
    assert_eq!(a.delivered, vec![1, 2]);

    // Removing a result removes its mark; a new job of that index may
    // then finish again unmarked.
    block(ledger.write(vec![
        LedgerOp::ResultRead { pool: A, index: 2 },
        accept(A, 2),
        finish(A, 2, b"again"),
    ]))
    .unwrap();
    let a = &ledger.load().unwrap()[0];
    assert_eq!(
        a.results,
        vec![(1, b"one".to_vec()), (2, b"again".to_vec())]
    );
    assert_eq!(a.delivered, vec![1]);

    block(ledger.write(vec![LedgerOp::RemovePool { pool: A }, put_pool(A)])).unwrap();
    let a = &ledger.load().unwrap()[0];
    assert!(a.results.is_empty() && a.delivered.is_empty());
}

#[test]
fn a_pending_jobs_flags_stay_until_it_finishes() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    let flags = |index| LedgerOp::PutFlags {
        pool: A,
        index,
        flags: vec![index as u8],
    };
    // Flags of a job not accepted are not kept.
    block(ledger.write(vec![put_pool(A), accept(A, 1), flags(1), flags(2)])).unwrap();
    let a = &ledger.load().unwrap()[0];
    assert_eq!(a.flags, vec![(1, vec![1])]);
    block(ledger.write(vec![finish(A, 1, b"done")])).unwrap();
    let a = &ledger.load().unwrap()[0];
    assert!(a.flags.is_empty(), "{:?}", a.flags);
}

#[test]
fn engine_numbers_stay_given_until_their_set_is_removed() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    let number = |pool, number| LedgerOp::NumberEngine { pool, number };
    block(ledger.write(vec![
        put_pool(A),
        put_pool(B),
        number(A, 2),
        number(A, 0),
        number(A, 2),
        number(B, 5),
    ]))
    .unwrap();
    drop(ledger);
    let ledger = Ledger::open(&dir.0).unwrap();
    let pools = ledger.load().unwrap();
    assert_eq!(pools[0].engines, vec![0, 2]);
    assert_eq!(pools[1].engines, vec![5]);
    block(ledger.write(vec![LedgerOp::RemovePool { pool: A }])).unwrap();
    let txn = ledger.db().unwrap().begin_read().unwrap();
    assert_eq!(txn.open_table(ENGINES).unwrap().len().unwrap(), 1);
}

#[test]
fn delivered_runs_are_one_row_each_and_split_when_a_result_goes() {
    let dir = TempDir::new();
    let ledger = Ledger::open(&dir.0).unwrap();
    let mut ops = vec![put_pool(A)];
    for index in 0..10 {
        ops.push(accept(A, index));
        ops.push(finish(A, index, b"r"));
    }
    // 0..=3 and 5..=9 are stored; 4 was read (gone), 42 never existed.
    ops.push(LedgerOp::ResultRead { pool: A, index: 4 });
    ops.push(LedgerOp::ResultsDelivered {
        pool: A,
        indices: vec![9, 1, 0, 42, 3, 2, 4, 5, 6, 7, 8, 3],
    });
    block(ledger.write(ops)).unwrap();
    let all: Vec<u64> = (0..10).filter(|i| *i != 4).collect();
    assert_eq!(ledger.load().unwrap()[0].delivered, all);
    {
        let txn = ledger.db().unwrap().begin_read().unwrap();
        assert_eq!(txn.open_table(DELIVERED).unwrap().len().unwrap(), 2);
    }
    // Marking again from the start of a run keeps the whole run.
    block(ledger.write(vec![LedgerOp::ResultsDelivered {
        pool: A,
        indices: vec![5],
    }]))
    .unwrap();
    assert_eq!(ledger.load().unwrap()[0].delivered, all);
    // Removing results inside, at the start and at the end of runs.
    let read = |index| LedgerOp::ResultRead { pool: A, index };
    block(ledger.write(vec![read(7), read(0), read(3), read(9)])).unwrap();
    assert_eq!(ledger.load().unwrap()[0].delivered, vec![1, 2, 5, 6, 8]);
    // A mark as older ledgers wrote it (one row, no value) reads the same.
    block(ledger.write(vec![accept(A, 20), finish(A, 20, b"r")])).unwrap();
    {
        let txn = ledger.db().unwrap().begin_write().unwrap();
        txn.open_table(DELIVERED)
            .unwrap()
            .insert(key(&A, 20).as_slice(), [].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    drop(ledger);
    let ledger = Ledger::open(&dir.0).unwrap();
    assert_eq!(ledger.load().unwrap()[0].delivered, vec![1, 2, 5, 6, 8, 20]);
    // And is removed with its result.
    block(ledger.write(vec![LedgerOp::ResultRead { pool: A, index: 20 }])).unwrap();
    assert_eq!(ledger.load().unwrap()[0].delivered, vec![1, 2, 5, 6, 8]);
}

#[test]
fn runs_of_consecutive_indices() {
    assert_eq!(runs(&[]), vec![]);
    assert_eq!(runs(&[3]), vec![(3, 3)]);
    assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 7), (9, 10)]);
    assert_eq!(
        runs(&[u64::MAX - 1, u64::MAX]),
        vec![(u64::MAX - 1, u64::MAX)]
    );
    assert_eq!(run_end(5, &[]), 5);
    assert_eq!(run_end(5, &9u64.to_be_bytes()), 9);
    // A row whose end is before its start marks its start only.
    assert_eq!(run_end(5, &1u64.to_be_bytes()), 5);
}
