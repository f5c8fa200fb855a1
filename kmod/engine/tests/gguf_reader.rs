//! GGUF reader: agreement with PyPI `gguf`'s reader on the generated test
//! models, and rejection (never a panic) of malformed files.

mod common;

use llamux_engine::gguf::{Gguf, GgufError, Value};

/// A small GGUF writer for hand-made (and deliberately broken) files.
#[derive(Default)]
struct Builder {
    version: u32,
    kv: Vec<(String, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, u64)>,
    alignment: u64,
    data_len: usize,
}

fn gstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

impl Builder {
    fn new() -> Self {
        Builder {
            version: 3,
            alignment: 32,
            ..Default::default()
        }
    }

    /// `v` is the encoded value including its type id.
    fn kv(mut self, key: &str, v: Vec<u8>) -> Self {
        self.kv.push((key.into(), v));
        self
    }

    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, off: u64) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, off));
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut o = b"GGUF".to_vec();
        o.extend_from_slice(&self.version.to_le_bytes());
        o.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        o.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            gstr(&mut o, k.as_bytes());
            o.extend_from_slice(v);
        }
        for (name, dims, ty, off) in &self.tensors {
            gstr(&mut o, name.as_bytes());
            o.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                o.extend_from_slice(&d.to_le_bytes());
            }
            o.extend_from_slice(&ty.to_le_bytes());
            o.extend_from_slice(&off.to_le_bytes());
        }
        while !(o.len() as u64).is_multiple_of(self.alignment) {
            o.push(0);
        }
        o.extend(std::iter::repeat_n(0xA5u8, self.data_len));
        o
    }
}

fn v_u32(x: u32) -> Vec<u8> {
    let mut v = 4u32.to_le_bytes().to_vec();
    v.extend_from_slice(&x.to_le_bytes());
    v
}

fn v_str(s: &str) -> Vec<u8> {
    let mut v = 8u32.to_le_bytes().to_vec();
    gstr(&mut v, s.as_bytes());
    v
}

/// A file using every metadata value type, nested arrays and three tensors.
fn every_type_file() -> Builder {
    let mut scalars = Vec::new();
    let mut b = Builder::new();
    for (ty, bytes) in [
        (0u32, vec![7u8]),
        (1, vec![0xF9]),
        (2, 500u16.to_le_bytes().to_vec()),
        (3, (-500i16).to_le_bytes().to_vec()),
        (4, 70000u32.to_le_bytes().to_vec()),
        (5, (-70000i32).to_le_bytes().to_vec()),
        (6, 1.5f32.to_le_bytes().to_vec()),
        (7, vec![1]),
        (10, (1u64 << 40).to_le_bytes().to_vec()),
        (11, (-(1i64 << 40)).to_le_bytes().to_vec()),
        (12, 2.25f64.to_le_bytes().to_vec()),
    ] {
        let mut v = ty.to_le_bytes().to_vec();
        v.extend_from_slice(&bytes);
        scalars.push((format!("t.{ty}"), v));
    }
    for (k, v) in scalars {
        b = b.kv(&k, v);
    }
    // array of strings
    let mut arr = 9u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&8u32.to_le_bytes());
    arr.extend_from_slice(&3u64.to_le_bytes());
    for s in ["a", "▁bc", ""] {
        gstr(&mut arr, s.as_bytes());
    }
    // array of arrays of i32
    let mut nested = 9u32.to_le_bytes().to_vec();
    nested.extend_from_slice(&9u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    for n in [2u64, 1] {
        nested.extend_from_slice(&5u32.to_le_bytes());
        nested.extend_from_slice(&n.to_le_bytes());
        for i in 0..n {
            nested.extend_from_slice(&(i as i32 - 1).to_le_bytes());
        }
    }
    let mut b = b
        .kv("arr.str", arr)
        .kv("arr.nested", nested)
        .kv("general.alignment", v_u32(64));
    b.alignment = 64;
    b = b
        .tensor("a", &[256, 2], 12, 0) // 2 Q4_K blocks: 288 B
        .tensor("b", &[8], 0, 320) // 32 B
        .tensor("c", &[32, 2], 8, 384); // 2 Q8_0 blocks: 68 B
    b.data_len = 452;
    b
}

#[test]
fn parses_every_value_type() {
    let bytes = every_type_file().build();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_offset % 64, 0);
    assert_eq!(g.get("t.0"), Some(&Value::U8(7)));
    assert_eq!(g.get("t.1"), Some(&Value::I8(-7)));
    assert_eq!(g.get("t.3"), Some(&Value::I16(-500)));
    assert_eq!(g.get("t.5").and_then(|v| v.as_u64()), None);
    assert_eq!(g.get("t.4").and_then(|v| v.as_u64()), Some(70000));
    assert_eq!(g.get("t.6").and_then(|v| v.as_f32()), Some(1.5));
    assert_eq!(g.get("t.7").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(g.get("t.11"), Some(&Value::I64(-(1 << 40))));
    assert_eq!(g.get("t.12"), Some(&Value::F64(2.25)));
    let strs: Vec<_> = g
        .get("arr.str")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(strs, ["a", "▁bc", ""]);
    let nested: Vec<Vec<i32>> = g
        .get("arr.nested")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| if let Value::I32(i) = x { i } else { panic!() })
                .collect()
        })
        .collect();
    assert_eq!(nested, vec![vec![-1, 0], vec![-1]]);
    let a = g.tensor("a").unwrap();
    assert_eq!((a.n_bytes, a.n_elements, a.type_name()), (288, 512, "Q4_K"));
    assert_eq!(g.tensor_data(a).len(), 288);
    assert_eq!(g.tensor("c").unwrap().start, g.data_offset + 384);
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = every_type_file().build();
    for cut in 0..bytes.len() {
        match Gguf::parse(&bytes[..cut]) {
            Err(_) => {}
            Ok(g) => panic!(
                "parsed a file cut at {cut} of {}: {} tensors",
                bytes.len(),
                g.tensors.len()
            ),
        }
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Flip every byte of the header to a few values: any result but a panic is
    // fine; when it parses, every tensor still lies inside the buffer.
    let bytes = every_type_file().build();
    let header_len = Gguf::parse(&bytes).unwrap().data_offset as usize;
    for i in 0..header_len {
        for x in [0x00u8, 0xFF, 0x80, 0x01, 0x7F] {
            let mut b = bytes.clone();
            b[i] = x;
            if let Ok(g) = Gguf::parse(&b) {
                for t in &g.tensors {
                    assert!(t.start + t.n_bytes <= b.len() as u64);
                    assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
                }
            }
        }
    }
}

fn err(b: &Builder) -> GgufError {
    Gguf::parse(&b.build()).expect_err("malformed file parsed")
}

#[test]
fn rejects_malformed_files_with_named_errors() {
    let ok = || {
        let mut b = Builder::new()
            .kv("k", v_str("v"))
            .tensor("w", &[32, 4], 0, 0);
        b.data_len = 512;
        b
    };
    assert!(Gguf::parse(&ok().build()).is_ok());

    let mut bad = ok().build();
    bad[0] = b'X';
    assert_eq!(Gguf::parse(&bad).unwrap_err(), GgufError::BadMagic);

    let mut b = ok();
    b.version = 1;
    assert_eq!(err(&b), GgufError::UnsupportedVersion(1));

    // Absurd counts.
    let mut bad = ok().build();
    bad[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bad),
        Err(GgufError::ImplausibleCount {
            what: "tensor count",
            ..
        })
    ));
    let mut bad = ok().build();
    bad[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bad),
        Err(GgufError::ImplausibleCount {
            what: "metadata count",
            ..
        })
    ));
    // A string length past the end.
    let mut bad = ok().build();
    bad[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bad),
        Err(GgufError::ImplausibleCount { .. })
    ));
    // An array claiming 2^61 u64s.
    let mut arr = 9u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&10u32.to_le_bytes());
    arr.extend_from_slice(&(1u64 << 61).to_le_bytes());
    assert!(matches!(
        err(&ok().kv("arr", arr)),
        GgufError::ImplausibleCount {
            what: "array length",
            ..
        }
    ));
    // Unknown value type, invalid bool, bad UTF-8 key, nesting bombs.
    assert!(matches!(
        err(&ok().kv("x", 13u32.to_le_bytes().to_vec())),
        GgufError::UnknownValueType { type_id: 13, .. }
    ));
    assert!(matches!(
        err(&ok().kv("x", vec![7, 0, 0, 0, 2])),
        GgufError::InvalidBool { value: 2, .. }
    ));
    let mut bad_key = ok();
    bad_key.kv.push((String::new(), v_u32(1)));
    let mut bytes = bad_key.build();
    let pos = bytes
        .windows(9)
        .position(|w| w == [0, 0, 0, 0, 0, 0, 0, 0, 4])
        .unwrap();
    bytes.splice(pos..pos + 8, [1u8, 0, 0, 0, 0, 0, 0, 0, 0xFF]);
    assert!(matches!(
        Gguf::parse(&bytes),
        Err(GgufError::InvalidUtf8 { .. })
    ));
    let mut deep = 9u32.to_le_bytes().to_vec();
    for _ in 0..20 {
        deep.extend_from_slice(&9u32.to_le_bytes());
        deep.extend_from_slice(&1u64.to_le_bytes());
    }
    deep.extend_from_slice(&[0; 64]);
    assert!(matches!(
        err(&ok().kv("deep", deep)),
        GgufError::ArrayTooDeep { .. }
    ));
    assert!(matches!(
        err(&ok().kv("k", v_u32(1))),
        GgufError::DuplicateKey { .. }
    ));
    assert_eq!(
        err(&ok().kv("general.alignment", v_u32(48))),
        GgufError::BadAlignment(48)
    );

    // Tensor table problems.
    let mut b = ok().tensor("x", &[1, 1, 1, 1, 1], 0, 512);
    b.data_len = 1024;
    assert_eq!(
        err(&b),
        GgufError::BadDims {
            tensor: 1,
            n_dims: 5
        }
    );
    assert_eq!(
        err(&ok().tensor("x", &[32, 0], 0, 512)),
        GgufError::DimsOverflow { tensor: 1 }
    );
    assert_eq!(
        err(&ok().tensor("x", &[1 << 32, 1 << 32], 0, 512)),
        GgufError::DimsOverflow { tensor: 1 }
    );
    assert_eq!(
        err(&ok().tensor("x", &[u64::MAX], 0, 512)),
        GgufError::DimsOverflow { tensor: 1 }
    );
    assert_eq!(
        err(&ok().tensor("x", &[32], 99, 512)),
        GgufError::UnknownTensorType {
            tensor: 1,
            type_id: 99
        }
    );
    assert_eq!(
        err(&ok().tensor("x", &[100], 12, 512)),
        GgufError::RowNotBlockAligned { tensor: 1 }
    );
    assert_eq!(
        err(&ok().tensor("x", &[8], 0, 513)),
        GgufError::MisalignedTensor {
            tensor: 1,
            offset: 513
        }
    );
    assert!(matches!(
        err(&ok().tensor("x", &[8], 0, 512)),
        GgufError::TensorOutOfBounds { tensor: 1, .. }
    ));
    assert!(matches!(
        err(&ok().tensor("x", &[8], 0, u64::MAX - 31)),
        GgufError::TensorOutOfBounds { tensor: 1, .. }
    ));
    assert_eq!(
        err(&ok().tensor("x", &[8], 0, 480)),
        GgufError::OverlappingTensors {
            first: 0,
            second: 1
        }
    );
    let mut b = ok().tensor("w", &[8], 0, 512);
    b.data_len = 1024;
    assert_eq!(err(&b), GgufError::DuplicateTensorName { tensor: 1 });
}

/// Canonical listing, the same format tests/fixtures/gguf-listing.py writes
/// from PyPI gguf's reader: scalars and strings as hex bits/bytes, so the
/// comparison is exact.
fn listing(g: &Gguf<'_>) -> String {
    use std::fmt::Write;
    fn val(out: &mut String, v: &Value<'_>) {
        match v {
            Value::U8(x) => write!(out, "{x}"),
            Value::I8(x) => write!(out, "{x}"),
            Value::U16(x) => write!(out, "{x}"),
            Value::I16(x) => write!(out, "{x}"),
            Value::U32(x) => write!(out, "{x}"),
            Value::I32(x) => write!(out, "{x}"),
            Value::U64(x) => write!(out, "{x}"),
            Value::I64(x) => write!(out, "{x}"),
            Value::F32(x) => write!(out, "f{:08x}", x.to_bits()),
            Value::F64(x) => write!(out, "d{:016x}", x.to_bits()),
            Value::Bool(x) => write!(out, "{}", *x as u8),
            Value::Str(s) => {
                out.push('s');
                s.iter().for_each(|b| write!(out, "{b:02x}").unwrap());
                Ok(())
            }
            Value::Array(a) => {
                write!(out, "[{}:{}", a.elem_type.name(), a.len).unwrap();
                for e in a.iter() {
                    out.push(' ');
                    val(out, &e);
                }
                out.push(']');
                Ok(())
            }
        }
        .unwrap()
    }
    let mut out = format!(
        "version {}\nalignment {}\ndata_offset {}\n",
        g.version, g.alignment, g.data_offset
    );
    for kv in &g.metadata {
        write!(out, "kv {} {} ", kv.key, kv.value.value_type().name()).unwrap();
        val(&mut out, &kv.value);
        out.push('\n');
    }
    for t in &g.tensors {
        let dims: Vec<String> = t.dims[..t.n_dims as usize]
            .iter()
            .map(|d| d.to_string())
            .collect();
        writeln!(
            out,
            "tensor {} {} {} {} {}",
            t.name,
            dims.join(","),
            t.type_name(),
            t.start,
            t.n_bytes
        )
        .unwrap();
    }
    out
}

#[test]
fn listing_equals_gguf_py_on_test_models() {
    for name in common::MODELS {
        let path = common::model_path(name);
        let bytes = common::read(&path);
        let g = Gguf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let expect = common::read_string(&path.with_extension("listing"));
        let got = listing(&g);
        if got != expect {
            let line = got.lines().zip(expect.lines()).find(|(a, b)| a != b);
            panic!("{name}: listing differs from gguf-py's; first difference: {line:?}");
        }
    }
}

#[test]
fn truncated_and_corrupted_real_model_is_rejected() {
    let bytes = common::read(&common::model_path("tiny-mixed.gguf"));
    let g = Gguf::parse(&bytes).unwrap();
    let header = g.data_offset as usize;
    // Every offset in the first KiB, then a stride through the header and
    // the data (any cut before the last tensor's end must fail).
    let last_end = g.tensors.iter().map(|t| t.start + t.n_bytes).max().unwrap() as usize;
    let cuts = (0..1024)
        .chain((1024..header).step_by(61))
        .chain((header..last_end).step_by(4093));
    for cut in cuts {
        assert!(Gguf::parse(&bytes[..cut]).is_err(), "cut at {cut} parsed");
    }
    // Point one tensor past the end, and two tensors at the same bytes.
    let t0 = &g.tensors[0];
    let mut bad = bytes.clone();
    let off_pos = find_tensor_offset_field(&bytes, &g, 0);
    bad[off_pos..off_pos + 8].copy_from_slice(
        &(bytes.len() as u64)
            .next_multiple_of(g.alignment)
            .to_le_bytes(),
    );
    assert!(matches!(
        Gguf::parse(&bad),
        Err(GgufError::TensorOutOfBounds { tensor: 0, .. })
    ));
    let mut bad = bytes.clone();
    let off1 = find_tensor_offset_field(&bytes, &g, 1);
    bad[off1..off1 + 8].copy_from_slice(&t0.rel_offset.to_le_bytes());
    assert!(matches!(
        Gguf::parse(&bad),
        Err(GgufError::OverlappingTensors { .. } | GgufError::TensorOutOfBounds { .. })
    ));
}

/// Byte position of tensor `i`'s offset field in the tensor table.
fn find_tensor_offset_field(bytes: &[u8], g: &Gguf<'_>, i: usize) -> usize {
    let t = &g.tensors[i];
    let mut needle = (t.name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(t.name.as_bytes());
    needle.extend_from_slice(&t.n_dims.to_le_bytes());
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    pos + needle.len() + 8 * t.n_dims as usize + 4
}

/// Replays the fuzzing regression corpus (kmod/engine/fuzz/regressions/gguf).
#[test]
fn fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/gguf");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(g) = Gguf::parse(&bytes) {
            for t in &g.tensors {
                assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
            }
        }
        n += 1;
    }
    assert!(n > 0, "empty regression corpus in {}", dir.display());
}

/// Writes the hand-made file as a fuzzing seed (run with --ignored).
#[test]
#[ignore]
fn write_fuzz_seed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/gguf");
    std::fs::write(dir.join("every-type.bin"), every_type_file().build()).unwrap();
}
