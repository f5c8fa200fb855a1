//! GGUF v2/v3 reader over a byte slice.
//!
//! Everything a file claims (counts, lengths, offsets, dimensions, types) is
//! checked against the buffer before it is used, so a malformed or hostile
//! file yields a [`GgufError`] naming what is wrong, never a panic or an
//! out-of-bounds read. Nothing is copied: strings, arrays and tensor data are
//! borrowed from the input.

use alloc::vec::Vec;
use core::fmt;

use crate::fallible;
use crate::quant::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;
const DEFAULT_ALIGNMENT: u64 = 32;
/// Nested arrays deeper than this are rejected (bounds recursion).
const MAX_ARRAY_DEPTH: u32 = 8;

/// What is wrong with a file. `at` fields are byte offsets into the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GgufError {
    BadMagic,
    UnsupportedVersion(u32),
    /// The file ends inside something that starts at `at`.
    Truncated {
        at: u64,
        what: &'static str,
    },
    /// A count or length that cannot fit in what is left of the file.
    ImplausibleCount {
        at: u64,
        what: &'static str,
        count: u64,
    },
    InvalidUtf8 {
        at: u64,
    },
    InvalidBool {
        at: u64,
        value: u8,
    },
    UnknownValueType {
        at: u64,
        type_id: u32,
    },
    ArrayTooDeep {
        at: u64,
    },
    DuplicateKey {
        index: u64,
    },
    BadAlignment(u64),
    BadDims {
        tensor: u32,
        n_dims: u32,
    },
    /// A dimension is 0, or the element count or byte size overflows.
    DimsOverflow {
        tensor: u32,
    },
    /// A type id that is not a ggml type at all.
    UnknownTensorType {
        tensor: u32,
        type_id: u32,
    },
    /// The first dimension is not a whole number of blocks of the type.
    RowNotBlockAligned {
        tensor: u32,
    },
    MisalignedTensor {
        tensor: u32,
        offset: u64,
    },
    TensorOutOfBounds {
        tensor: u32,
        start: u64,
        end: u64,
        file_len: u64,
    },
    OverlappingTensors {
        first: u32,
        second: u32,
    },
    DuplicateTensorName {
        tensor: u32,
    },
    OutOfMemory,
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgufError::*;
        match self {
            BadMagic => write!(f, "not a GGUF file (bad magic)"),
            UnsupportedVersion(v) => write!(f, "unsupported GGUF version {v} (need 2 or 3)"),
            Truncated { at, what } => write!(f, "truncated file: {what} at byte {at}"),
            ImplausibleCount { at, what, count } => {
                write!(f, "implausible {what} {count} at byte {at}")
            }
            InvalidUtf8 { at } => write!(f, "invalid UTF-8 in key or tensor name at byte {at}"),
            InvalidBool { at, value } => write!(f, "invalid bool value {value} at byte {at}"),
            UnknownValueType { at, type_id } => {
                write!(f, "unknown metadata value type {type_id} at byte {at}")
            }
            ArrayTooDeep { at } => write!(f, "metadata arrays nested too deeply at byte {at}"),
            DuplicateKey { index } => write!(f, "metadata key {index} is a duplicate"),
            BadAlignment(a) => write!(f, "general.alignment {a} is not a power of two"),
            BadDims { tensor, n_dims } => {
                write!(f, "tensor {tensor}: {n_dims} dimensions (max {MAX_DIMS})")
            }
            DimsOverflow { tensor } => {
                write!(f, "tensor {tensor}: zero dimension or overflow in dims")
            }
            UnknownTensorType { tensor, type_id } => {
                write!(f, "tensor {tensor}: unknown tensor type {type_id}")
            }
            RowNotBlockAligned { tensor } => {
                write!(
                    f,
                    "tensor {tensor}: row length is not a multiple of the block size"
                )
            }
            MisalignedTensor { tensor, offset } => {
                write!(f, "tensor {tensor}: offset {offset} not aligned")
            }
            TensorOutOfBounds {
                tensor,
                start,
                end,
                file_len,
            } => write!(
                f,
                "tensor {tensor} out of bounds: bytes {start}..{end} of a {file_len}-byte file"
            ),
            OverlappingTensors { first, second } => {
                write!(f, "tensors {first} and {second} overlap")
            }
            DuplicateTensorName { tensor } => write!(f, "tensor {tensor}: duplicate name"),
            OutOfMemory => write!(f, "out of memory while indexing the file"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for GgufError {}

/// Metadata value types (GGUF `gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    Str = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    fn from_u32(v: u32) -> Option<Self> {
        use ValueType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => Str,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size of a fixed-size value; None for strings and arrays.
    fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            Str | Array => None,
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            Str => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// A metadata value, borrowed from the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    /// GGUF strings should be UTF-8; values are kept as bytes (vocabularies
    /// may hold anything) and keys/tensor names are checked.
    Str(&'a [u8]),
    Array(Array<'a>),
}

impl<'a> Value<'a> {
    /// Any integer type that fits in u64 (negative values do not).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|s| core::str::from_utf8(s).ok())
    }

    pub fn as_array(&self) -> Option<Array<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::Str,
            Value::Array(_) => ValueType::Array,
        }
    }
}

/// A validated metadata array: `raw` holds exactly `len` encoded elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Array<'a> {
    pub elem_type: ValueType,
    pub len: u64,
    raw: &'a [u8],
    /// Byte offset of `raw` in the file, for error positions.
    base: u64,
}

impl<'a> Array<'a> {
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cur: Cursor {
                buf: self.raw,
                pos: 0,
                base: self.base,
            },
            ty: self.elem_type,
            left: self.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Elements of an [`Array`]. The array was validated when the file was
/// parsed, so decoding cannot fail here; a `None` ends the iteration early
/// only if that invariant were broken.
pub struct ArrayIter<'a> {
    cur: Cursor<'a>,
    ty: ValueType,
    left: u64,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.cur.value(self.ty, 0).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.left).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaKv<'a> {
    pub key: &'a str,
    pub value: Value<'a>,
}

/// One tensor's description, checked against the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    pub name: &'a str,
    pub n_dims: u32,
    /// ggml order: dims[0] is the row length; unused dims are 1.
    pub dims: [u64; MAX_DIMS],
    /// ggml type id as stored.
    pub type_id: u32,
    /// The type if the engine can compute with it.
    pub ty: Option<GgmlType>,
    /// Offset relative to the data section, as stored.
    pub rel_offset: u64,
    /// Absolute byte range in the file.
    pub start: u64,
    pub n_bytes: u64,
    pub n_elements: u64,
}

impl TensorInfo<'_> {
    pub fn type_name(&self) -> &'static str {
        ggml_type_name(self.type_id)
    }

    /// Rows of a 2-D (or higher, flattened) tensor.
    pub fn n_rows(&self) -> u64 {
        self.dims[1] * self.dims[2] * self.dims[3]
    }
}

/// A parsed GGUF file borrowing `bytes`.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub alignment: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    pub metadata: Vec<MetaKv<'a>>,
    pub tensors: Vec<TensorInfo<'a>>,
    bytes: &'a [u8],
}

impl<'a> Gguf<'a> {
    /// Parses and validates the header, metadata and tensor table.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        let mut c = Cursor {
            buf: bytes,
            pos: 0,
            base: 0,
        };
        if c.take(4, "magic").map_err(|_| GgufError::BadMagic)? != MAGIC {
            return Err(GgufError::BadMagic);
        }
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let at = c.at();
        let n_tensors = c.u64("tensor count")?;
        // A tensor info takes at least 8 (name len) + 4 + 4 + 8 bytes.
        c.check_count(n_tensors, 24, at, "tensor count")?;
        if n_tensors > u32::MAX as u64 {
            return Err(GgufError::ImplausibleCount {
                at,
                what: "tensor count",
                count: n_tensors,
            });
        }
        let at = c.at();
        let n_kv = c.u64("metadata count")?;
        // A key/value takes at least 8 (key len) + 4 (type) + 1 bytes.
        c.check_count(n_kv, 13, at, "metadata count")?;

        let mut metadata = fallible::with_capacity(n_kv as usize)?;
        for _ in 0..n_kv {
            let key = c.str_utf8("metadata key")?;
            let ty = c.value_type()?;
            let value = c.value(ty, 0)?;
            metadata.push(MetaKv { key, value });
        }
        check_unique_keys(&metadata)?;

        let alignment = match metadata.iter().find(|kv| kv.key == "general.alignment") {
            Some(kv) => match kv.value.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                Some(a) => return Err(GgufError::BadAlignment(a)),
                None => return Err(GgufError::BadAlignment(0)),
            },
            None => DEFAULT_ALIGNMENT,
        };

        let mut tensors = fallible::with_capacity(n_tensors as usize)?;
        for i in 0..n_tensors as u32 {
            tensors.push(c.tensor_info(i, alignment)?);
        }
        let file_len = bytes.len() as u64;
        let data_offset =
            align_up(c.pos as u64, alignment).ok_or(GgufError::BadAlignment(alignment))?;
        if data_offset > file_len && !tensors.is_empty() {
            return Err(GgufError::Truncated {
                at: c.pos as u64,
                what: "tensor data",
            });
        }
        for (i, t) in tensors.iter_mut().enumerate() {
            let start = data_offset.checked_add(t.rel_offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => t.start = start,
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        tensor: i as u32,
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }
        check_names_and_overlaps(&tensors)?;
        Ok(Gguf {
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            bytes,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.metadata
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor's bytes (range validated by `parse`).
    pub fn tensor_data(&self, t: &TensorInfo<'_>) -> &'a [u8] {
        // `start..start+n_bytes` was checked to lie within `bytes` in parse;
        // `get` keeps this total for a TensorInfo from another file.
        let start = t.start as usize;
        self.bytes
            .get(start..start.saturating_add(t.n_bytes as usize))
            .unwrap_or(&[])
    }

    /// The architecture name (`general.architecture`).
    pub fn architecture(&self) -> Option<&'a str> {
        self.get("general.architecture").and_then(|v| v.as_str())
    }
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

fn check_unique_keys(metadata: &[MetaKv<'_>]) -> Result<(), GgufError> {
    let mut order: Vec<u32> = fallible::with_capacity(metadata.len())?;
    order.extend(0..metadata.len() as u32);
    order.sort_unstable_by_key(|&i| metadata[i as usize].key);
    match order
        .windows(2)
        .find(|w| metadata[w[0] as usize].key == metadata[w[1] as usize].key)
    {
        Some(w) => Err(GgufError::DuplicateKey {
            index: w[0].max(w[1]) as u64,
        }),
        None => Ok(()),
    }
}

fn check_names_and_overlaps(tensors: &[TensorInfo<'_>]) -> Result<(), GgufError> {
    let mut order: Vec<u32> = fallible::with_capacity(tensors.len())?;
    order.extend(0..tensors.len() as u32);
    order.sort_unstable_by_key(|&i| (tensors[i as usize].start, tensors[i as usize].n_bytes));
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0] as usize], &tensors[w[1] as usize]);
        if a.n_bytes > 0 && b.n_bytes > 0 && a.start + a.n_bytes > b.start {
            return Err(GgufError::OverlappingTensors {
                first: w[0].min(w[1]),
                second: w[0].max(w[1]),
            });
        }
    }
    order.sort_unstable_by_key(|&i| tensors[i as usize].name);
    for w in order.windows(2) {
        if tensors[w[0] as usize].name == tensors[w[1] as usize].name {
            return Err(GgufError::DuplicateTensorName {
                tensor: w[0].max(w[1]),
            });
        }
    }
    Ok(())
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the file.
    base: u64,
}

impl<'a> Cursor<'a> {
    fn at(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn left(&self) -> u64 {
        self.buf.len().saturating_sub(self.pos) as u64
    }

    // The file's bytes are untrusted: every slice is cut with get(), so a
    // bad count is an error, never a panic.
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let buf: &'a [u8] = self.buf;
        let s = usize::try_from(n)
            .ok()
            .and_then(|n| buf.get(self.pos..)?.get(..n))
            .ok_or(GgufError::Truncated {
                at: self.at(),
                what,
            })?;
        self.pos += s.len();
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects a count of items of at least `min_size` bytes each that
    /// cannot fit in the rest of the buffer.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        at: u64,
        what: &'static str,
    ) -> Result<(), GgufError> {
        if count.checked_mul(min_size).is_none_or(|n| n > self.left()) {
            return Err(GgufError::ImplausibleCount { at, what, count });
        }
        Ok(())
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], GgufError> {
        let at = self.at();
        let len = self.u64(what)?;
        if len > self.left() {
            return Err(GgufError::ImplausibleCount {
                at,
                what,
                count: len,
            });
        }
        self.take(len, what)
    }

    fn str_utf8(&mut self, what: &'static str) -> Result<&'a str, GgufError> {
        let at = self.at();
        core::str::from_utf8(self.bytes(what)?).map_err(|_| GgufError::InvalidUtf8 { at })
    }

    fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let at = self.at();
        let id = self.u32("value type")?;
        ValueType::from_u32(id).ok_or(GgufError::UnknownValueType { at, type_id: id })
    }

    fn value(&mut self, ty: ValueType, depth: u32) -> Result<Value<'a>, GgufError> {
        const W: &str = "metadata value";
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(W)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(W)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(W)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(W)?)),
            ValueType::U32 => Value::U32(self.u32(W)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(W)?)),
            ValueType::U64 => Value::U64(self.u64(W)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(W)?)),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(W)?)),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(W)?)),
            ValueType::Bool => {
                let at = self.at();
                match self.array::<1>(W)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    v => return Err(GgufError::InvalidBool { at, value: v }),
                }
            }
            ValueType::Str => Value::Str(self.bytes("string")?),
            ValueType::Array => {
                let at = self.at();
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::ArrayTooDeep { at });
                }
                let elem_type = self.value_type()?;
                let at_len = self.at();
                let len = self.u64("array length")?;
                let min = elem_type.fixed_size().unwrap_or(8) as u64;
                self.check_count(len, min, at_len, "array length")?;
                let start = self.pos;
                let base = self.at();
                match elem_type.fixed_size() {
                    Some(sz) => {
                        let raw = self.take(len * sz as u64, "array")?;
                        if elem_type == ValueType::Bool {
                            if let Some((i, &v)) = raw.iter().enumerate().find(|&(_, &b)| b > 1) {
                                return Err(GgufError::InvalidBool {
                                    at: base + i as u64,
                                    value: v,
                                });
                            }
                        }
                    }
                    None => {
                        for _ in 0..len {
                            self.value(elem_type, depth + 1)?;
                        }
                    }
                }
                Value::Array(Array {
                    elem_type,
                    len,
                    raw: self.buf.get(start..self.pos).unwrap_or_default(),
                    base,
                })
            }
        })
    }

    fn tensor_info(&mut self, index: u32, alignment: u64) -> Result<TensorInfo<'a>, GgufError> {
        let name = self.str_utf8("tensor name")?;
        let n_dims = self.u32("tensor dims")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadDims {
                tensor: index,
                n_dims,
            });
        }
        let mut dims = [1u64; MAX_DIMS];
        for d in dims.iter_mut().take(n_dims as usize) {
            *d = self.u64("tensor dims")?;
        }
        let type_id = self.u32("tensor type")?;
        let rel_offset = self.u64("tensor offset")?;
        let overflow = GgufError::DimsOverflow { tensor: index };
        // ggml requires every dim to fit in i64.
        let mut n_elements: u64 = 1;
        for &d in &dims {
            if d == 0 || d > i64::MAX as u64 {
                return Err(overflow);
            }
            n_elements = n_elements
                .checked_mul(d)
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or(overflow.clone())?;
        }
        let (block_len, block_bytes) =
            ggml_type_size(type_id).ok_or(GgufError::UnknownTensorType {
                tensor: index,
                type_id,
            })?;
        if dims[0].checked_rem(block_len) != Some(0) {
            return Err(GgufError::RowNotBlockAligned { tensor: index });
        }
        let n_bytes = n_elements
            .checked_div(block_len)
            .and_then(|n| n.checked_mul(block_bytes))
            .ok_or(overflow)?;
        if rel_offset.checked_rem(alignment) != Some(0) {
            return Err(GgufError::MisalignedTensor {
                tensor: index,
                offset: rel_offset,
            });
        }
        Ok(TensorInfo {
            name,
            n_dims,
            dims,
            type_id,
            ty: GgmlType::from_u32(type_id),
            rel_offset,
            start: 0,
            n_bytes,
            n_elements,
        })
    }
}

/// (values per block, bytes per block) of every ggml type id, so files with
/// types the engine cannot compute with can still be listed and checked.
fn ggml_type_size(id: u32) -> Option<(u64, u64)> {
    Some(match id {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        _ => return None,
    })
}

/// ggml's name of a type id ("?" for unknown ids).
pub fn ggml_type_name(id: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "F32", "F16", "Q4_0", "Q4_1", "?", "?", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
        "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
        "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "?", "?", "?",
        "TQ1_0", "TQ2_0", "?", "?", "?", "MXFP4",
    ];
    NAMES.get(id as usize).copied().unwrap_or("?")
}
