#![no_main]
//! See [`nbserve_fuzz::requests`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nbserve_fuzz::requests(data);
});
