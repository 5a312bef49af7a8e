#![no_main]
//! See [`nbserve_fuzz::tokenizer`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nbserve_fuzz::tokenizer(data);
});
