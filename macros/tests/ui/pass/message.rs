// Reply types written as types or strings, default and fixed names.

use parallel::Message;

#[derive(Message, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Ping;

#[derive(Message, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[message(result = Result<Vec<u8>, String>, name = "demo.fetch")]
struct Fetch {
    key: String,
}

#[derive(Message, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[message(result = "Option<u64>")]
enum Lookup {
    ById(u64),
    ByName(String),
}

fn reply<M: actix::Message<Result = R>, R>() {}

fn main() {
    reply::<Ping, ()>();
    reply::<Fetch, Result<Vec<u8>, String>>();
    reply::<Lookup, Option<u64>>();
    assert_eq!(<Fetch as parallel::Message>::NAME, "demo.fetch");
    assert_eq!(<Ping as parallel::Message>::NAME, concat!(module_path!(), "::Ping"));
    assert_ne!(<Ping as parallel::Message>::TAG, <Lookup as parallel::Message>::TAG);
}
