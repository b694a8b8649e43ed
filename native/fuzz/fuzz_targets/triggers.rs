//! Any bytes through the masking triggers, built from a table of the secrets file's shapes: an
//! answer for every input, in one bounded pass (libFuzzer's timeout catches a slow one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhi_native::triggers::Triggers;

fuzz_target!(|data: &[u8]| {
    let words = |list: &[&str]| list.iter().map(|w| w.as_bytes().to_vec()).collect::<Vec<_>>();
    let triggers = Triggers::new(
        &words(&["ghp_", "xoxb-", "AKIA", "-----BEGIN", "sk-", "eyJ"]),
        &words(&["password", "secret", "token", "code", "api_key"]),
        &words(&["code"]),
        &words(&["bearer", "basic", "--password", "identified by"]),
    );
    let _ = triggers.suspicious(data);
});
