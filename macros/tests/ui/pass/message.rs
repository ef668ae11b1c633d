// Reply types written as types or strings, default and fixed names.

use parallel::Message;
use parallel::rkyv::{Archive, Deserialize, Serialize};

#[derive(Message, Archive, Serialize, Deserialize)]
#[rkyv(crate = parallel::rkyv)]
struct Ping;

#[derive(Message, Archive, Serialize, Deserialize)]
#[rkyv(crate = parallel::rkyv)]
#[message(result = Result<Vec<u8>, String>, name = "demo.fetch")]
struct Fetch {
    key: String,
}

#[derive(Message, Archive, Serialize, Deserialize)]
#[rkyv(crate = parallel::rkyv)]
#[message(result = "Option<u64>")]
enum Lookup {
    ById(u64),
    ByName(String),
}

fn reply<M: parallel::actix::Message<Result = R>, R>() {}

fn main() {
    reply::<Ping, ()>();
    reply::<Fetch, Result<Vec<u8>, String>>();
    reply::<Lookup, Option<u64>>();
    assert_eq!(<Fetch as parallel::Message>::NAME, "demo.fetch");
    assert_eq!(<Ping as parallel::Message>::NAME, concat!(module_path!(), "::Ping"));
    assert_ne!(<Ping as parallel::Message>::TAG, <Lookup as parallel::Message>::TAG);
}
