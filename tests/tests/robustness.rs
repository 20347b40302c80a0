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

/// Replaces one number inside an operator's attributes (the `Op(...)` part of a node line) by
/// a hostile value.
fn mutate_attribute(text: &str, next: &mut impl FnMut() -> u64) -> Option<String> {
    const HOSTILE: [&str; 8] = ["0", "1", "-1", "7", "-9", "100000", "1099511627776", "-1099511627776"];
    let lines: Vec<&str> = text.lines().collect();
    let nodes: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" @\"") && lines[i].contains('(')).collect();
    let li = nodes[(next() as usize) % nodes.len()];
    let line = lines[li];
    let eq = line.find(" = ")? + 3;
    let op_end = line[eq..].find(") ").map(|p| eq + p)?;
    let digits: Vec<usize> = (eq..op_end)
        .filter(|&i| line.as_bytes()[i].is_ascii_digit() && !line.as_bytes()[i - 1].is_ascii_digit())
        .collect();
    let at = *digits.get((next() as usize) % digits.len().max(1))?;
    let end = at + line[at..].find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    let new_line = format!("{}{}{}", &line[..at], HOSTILE[(next() as usize) % HOSTILE.len()], &line[end..]);
    let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    out[li] = new_line;
    Some(out.join("\n"))
}

#[test]
fn hostile_attributes_never_panic_inference_or_the_interpreter() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut next = rng(11);
    let (mut ran, mut rejected) = (0, 0);
    for model in ["bert_tiny", "llama_tiny"] {
        let g = slmtvm_frontend::load_onnx(&dir.join(model).join("model.onnx"), &LoadOptions::default()).unwrap();
        let inputs: Vec<slmtvm_ir::Tensor> = g
            .inputs
            .iter()
            .map(|&i| {
                let f = dir.join(model).join("inputs").join(format!("{}.npy", g.value(i).name));
                slmtvm_frontend::npy::read_npy(&f).unwrap()
            })
            .collect();
        let text = slmtvm_ir::text::print(&g);
        for i in 0..500 {
            let Some(t) = mutate_attribute(&text, &mut next) else { continue };
            let r = std::panic::catch_unwind(|| {
                let mut g = slmtvm_ir::text::parse(&t)?;
                g.infer()?;
                slmtvm_ir::interp::run(&g, &inputs).map(|_| ())
            });
            match r {
                Ok(Ok(())) => ran += 1,
                Ok(Err(_)) => rejected += 1,
                Err(_) => panic!(
                    "{model}: attribute mutation {i} panicked:\n{}",
                    t.lines().find(|l| !text.contains(l)).unwrap_or("")
                ),
            }
        }
    }
    eprintln!("hostile attributes: {ran} graphs ran, {rejected} rejected with an error");
    assert!(rejected > 50, "too few mutations reached the operators");
}
