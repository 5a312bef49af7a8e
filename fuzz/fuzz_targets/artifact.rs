#![no_main]
//! See [`nbserve_fuzz::artifact`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nbserve_fuzz::artifact(data);
});
