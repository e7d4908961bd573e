//! Feeds arbitrary bytes, split arbitrarily, to the wire frame decoder and
//! decodes until the first error; see `shoal_core::wire::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shoal_core::wire::fuzzing::fuzz_frame_decoder(data));
