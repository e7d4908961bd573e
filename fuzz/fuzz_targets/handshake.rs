//! Decodes arbitrary bytes under the handshake limit and drives both sides
//! of the wire handshake with what comes out; see
//! `shoal_core::wire::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shoal_core::wire::fuzzing::fuzz_handshake(data));
