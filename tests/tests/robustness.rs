//! Hostile bytes never panic the parsers: deterministic mutations of a real model (byte flips,
//! truncations, spliced garbage) through the ONNX importer, and of its text form through the
//! text parser. Each attempt must return Ok or an error, never unwind.

use slmtvm_frontend::{LoadOptions, load_onnx_bytes};
use std::path::Path;

/// Deterministic SplitMix64 so failures reproduce.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn mutate(base: &[u8], next: &mut impl FnMut() -> u64) -> Vec<u8> {
    let mut b = base.to_vec();
    match next() % 4 {
        0 => {
            for _ in 0..1 + next() % 8 {
                let i = (next() as usize) % b.len();
                b[i] ^= 1 << (next() % 8);
            }
        }
        1 => b.truncate((next() as usize) % b.len()),
        2 => {
            let i = (next() as usize) % b.len();
            let n = 1 + (next() as usize) % 16;
            for k in 0..n.min(b.len() - i) {
                b[i + k] = next() as u8;
            }
        }
        _ => {
            // A varint length prefix blown up to a huge value.
            let i = (next() as usize) % b.len();
            b[i] = 0xff;
            if i + 1 < b.len() {
                b[i + 1] = 0xff;
            }
        }
    }
    b
}

#[test]
fn mutated_models_never_panic() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/bert_tiny/model.onnx");
    let base = std::fs::read(&model).unwrap();
    let mut next = rng(0x5eed);
    let (mut ok, mut err) = (0, 0);
    for i in 0..400 {
        let bytes = mutate(&base, &mut next);
        let r = std::panic::catch_unwind(|| load_onnx_bytes(&bytes, None, &LoadOptions::default()).map(|_| ()));
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panic!("mutation {i} panicked the importer"),
        }
    }
    eprintln!("mutated models: {ok} loaded, {err} rejected with an error");
    assert!(err > 100, "most mutations should be rejected");
}

#[test]
fn mutated_text_never_panics() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/bert_tiny/model.onnx");
    let g = slmtvm_frontend::load_onnx(&model, &LoadOptions::default()).unwrap();
    let text = slmtvm_ir::text::print(&g);
    let base = text.into_bytes();
    let mut next = rng(7);
    for i in 0..400 {
        let bytes = mutate(&base, &mut next);
        let s = String::from_utf8_lossy(&bytes);
        let r = std::panic::catch_unwind(|| slmtvm_ir::text::parse(&s).map(|_| ()));
        assert!(r.is_ok(), "mutation {i} panicked the text parser");
    }
}
