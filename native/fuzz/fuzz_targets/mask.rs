//! Any string through the masker built from the real secrets table (`masking_table.txt`, kept
//! equal to `outputs.redact.native_table_lines` by a test): an answer for every input and no
//! panic on any slicing; masking its own output again gives an answer too. (Masking is not
//! exactly idempotent, in either core: `://u:[masked][masked]@` is masked again to
//! `://u:[masked]@`. Nothing is revealed by it, so it is not asserted here.)
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nhi_native::mask::Masker;

static MASKER: LazyLock<Masker> =
    LazyLock::new(|| Masker::from_table(include_str!("../masking_table.txt")).expect("the real table"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut fingerprint = |secret: &str| format!("sha256:{:016x}", secret.len());
    if let Ok(Some(once)) = MASKER.mask(text, &mut fingerprint) {
        let _ = MASKER.mask(&once, &mut fingerprint);
    }
});
