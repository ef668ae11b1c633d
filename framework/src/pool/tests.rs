use super::*;
use crate::cluster::worker::kind;

struct Doubler {
    factor: u64,
    seen: Vec<u32>,
}

impl Worker for Doubler {
    type Init = u64;
    type Job = u64;
    type Output = (u64, Vec<u32>);
    type Update = u32;

    fn init(factor: u64) -> Self {
        Doubler {
            factor,
            seen: Vec::new(),
        }
    }

    fn run(&mut self, job: u64) -> (u64, Vec<u32>) {
        (job * self.factor, self.seen.clone())
    }

    fn handle_update(&mut self, update: u32) {
        self.seen.push(update);
    }
}
crate::register_worker!(Doubler);

fn bytes<T: WireType>(v: &T) -> Vec<u8> {
    crate::wire::encode(v).unwrap().to_vec()
}

#[test]
fn a_registered_worker_is_found_by_its_name_and_runs_encoded_jobs_and_updates() {
    let found = kind(kind_name::<Doubler>()).expect("registered");
    let mut runner = (found.start)(&bytes(&3u64)).expect("init");
    runner.update(&bytes(&7u32)).expect("update");
    let out = runner.run(&bytes(&5u64)).expect("run");
    let (value, seen) = crate::wire::decode_owned::<(u64, Vec<u32>)>(&out).unwrap();
    assert_eq!(value, 15);
    assert_eq!(seen, vec![7]);
}

#[test]
fn bytes_that_are_no_job_give_an_error_not_a_panic() {
    let found = kind(kind_name::<Doubler>()).expect("registered");
    assert!((found.start)(&[1, 2]).is_err(), "init from 2 bytes");
    let mut runner = (found.start)(&bytes(&3u64)).expect("init");
    assert!(runner.run(&[0xff; 3]).is_err());
    assert!(runner.update(&[]).is_err());
}

#[test]
fn an_unregistered_name_is_not_found() {
    assert!(kind("no::such::Worker").is_none());
}
