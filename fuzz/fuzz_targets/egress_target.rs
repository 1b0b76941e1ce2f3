//! Egress destination text → `EgressTarget::parse`; a parsed target's `Display` parses back to
//! the same target, so what `septa check` prints is what was admitted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use septa_manifest::EgressTarget;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(target) = EgressTarget::parse(text) else {
        return;
    };
    let shown = target.to_string();
    match EgressTarget::parse(&shown) {
        Ok(reparsed) => assert_eq!(
            reparsed, target,
            "{text:?} parsed, displayed as {shown:?}, and parsed back differently"
        ),
        Err(error) => panic!("{text:?} parsed, displayed as {shown:?}, which is refused: {error}"),
    }
});
