//! A safe reader and a numpy-compatible writer for the pickles inside challenge `.npz` object
//! arrays (`boxes`, `clicks`, `clicks_order`).
//!
//! No crate reads these: `serde-pickle` rejects numpy's globals (CHALLENGE.md §2.5), so this is
//! a small interpreter limited to the opcodes numpy 1.26 (protocol 3) and numpy ≥ 2 (protocol 4)
//! emit for object arrays of dicts, lists, strings, `None` and `numpy.int64` scalars. It never
//! executes anything: the only callables are four allow-listed numpy globals, each rebuilt here
//! as data. Everything else is an error.

use std::collections::HashMap;

/// A Python value as found in a challenge pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// A Python int or a numpy integer scalar.
    Int(i64),
    /// A Python float or a numpy float scalar.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `tuple`.
    Tuple(Vec<PyValue>),
    /// A `dict`, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    /// A numpy array: shape and items in C order.
    Array {
        /// The array's shape.
        shape: Vec<usize>,
        /// Its elements, row-major.
        items: Vec<PyValue>,
    },
}

impl PyValue {
    /// The value for `key` when this is a dict with a `str` key of that name.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(kv) => kv
                .iter()
                .find(|(k, _)| matches!(k, PyValue::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, for `Int` (and `Bool`, as Python does).
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            PyValue::Int(i) => Some(i),
            PyValue::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// The elements of a list, tuple or 1-D view of an array.
    pub fn as_seq(&self) -> Option<&[PyValue]> {
        match self {
            PyValue::List(v) | PyValue::Tuple(v) => Some(v),
            PyValue::Array { items, .. } => Some(items),
            _ => None,
        }
    }
}

/// Why a pickle was refused: byte offset and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    /// Offset of the opcode in the stream.
    pub offset: usize,
    /// What is wrong.
    pub detail: String,
}

type Id = usize;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    Reconstruct,
    Scalar,
    NdarrayType,
    DtypeType,
}

#[derive(Debug, Clone)]
enum Node {
    Val(PyValue),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    /// `numpy.dtype(descr)`; `order` from the BUILD state ('<', '>', '|', '=').
    Dtype {
        descr: String,
        order: u8,
    },
    Array {
        shape: Vec<usize>,
        items: Vec<Id>,
    },
}

/// Most nodes a pickle may create: bounded so a hostile file cannot exhaust memory via
/// cheap opcodes (each node costs a few dozen bytes).
const MAX_NODES: usize = 50_000_000;
/// Deepest nesting converted back to a value (also stops self-referencing containers).
const MAX_DEPTH: usize = 64;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<usize, Id>,
}

impl<'a> Machine<'a> {
    fn err<T>(&self, detail: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.op_pos,
            detail: detail.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        if self.data.len() - self.pos < n {
            return self.err(format!("stream ends inside an argument ({n} bytes wanted)"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("unterminated text argument");
        };
        let s = std::str::from_utf8(&rest[..n]).or_else(|_| self.err("text is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, node: Node) -> Result<(), PickleError> {
        if self.nodes.len() >= MAX_NODES {
            return self.err("too many objects");
        }
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
        Ok(())
    }
    fn push_val(&mut self, v: PyValue) -> Result<(), PickleError> {
        self.push(Node::Val(v))
    }
    fn pop(&mut self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.err("stack underflow");
        }
        self.stack
            .pop()
            .map_or_else(|| self.err("stack underflow"), Ok)
    }
    fn top(&self) -> Result<Id, PickleError> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.marks.last().copied().unwrap_or(0) => Ok(id),
            _ => self.err("stack underflow"),
        }
    }
    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return self.err("no MARK on the stack");
        };
        Ok(self.stack.split_off(m))
    }
    fn string(&mut self, n: usize) -> Result<(), PickleError> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).or_else(|_| self.err("string is not UTF-8"))?;
        self.push_val(PyValue::Str(s.to_string()))
    }
    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        let g = match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Global::Reconstruct
            }
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::Scalar,
            ("numpy", "ndarray") => Global::NdarrayType,
            ("numpy", "dtype") => Global::DtypeType,
            _ => return self.err(format!("refused global `{module}.{name}`")),
        };
        self.push(Node::Global(g))
    }
    fn memo_put(&mut self, key: usize) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }
    fn memo_get(&mut self, key: usize) -> Result<(), PickleError> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.err(format!("memo key {key} was never stored")),
        }
    }
    fn str_of(&self, id: Id) -> Option<&str> {
        match &self.nodes[id] {
            Node::Val(PyValue::Str(s)) => Some(s),
            _ => None,
        }
    }
    fn int_of(&self, id: Id) -> Option<i64> {
        match &self.nodes[id] {
            Node::Val(v) => v.as_int(),
            _ => None,
        }
    }

    /// Decodes `bytes` of numpy type `descr` (byte order `order`) into values.
    fn decode_raw(
        &self,
        descr: &str,
        order: u8,
        bytes: &[u8],
    ) -> Result<Vec<PyValue>, PickleError> {
        let kind = descr.trim_start_matches(['<', '>', '|', '=']);
        let big = order == b'>' || descr.starts_with('>');
        type Decode = fn(&[u8], bool) -> PyValue;
        let (size, f): (usize, Decode) = match kind {
            "i8" | "int64" => (8, |b, be| {
                let a: [u8; 8] = b.try_into().unwrap_or([0; 8]);
                PyValue::Int(if be {
                    i64::from_be_bytes(a)
                } else {
                    i64::from_le_bytes(a)
                })
            }),
            "i4" | "int32" => (4, |b, be| {
                let a: [u8; 4] = b.try_into().unwrap_or([0; 4]);
                PyValue::Int(i64::from(if be {
                    i32::from_be_bytes(a)
                } else {
                    i32::from_le_bytes(a)
                }))
            }),
            "u1" | "uint8" => (1, |b, _| PyValue::Int(i64::from(b[0]))),
            "b1" | "bool" => (1, |b, _| PyValue::Bool(b[0] != 0)),
            "f8" | "float64" => (8, |b, be| {
                let a: [u8; 8] = b.try_into().unwrap_or([0; 8]);
                PyValue::Float(if be {
                    f64::from_be_bytes(a)
                } else {
                    f64::from_le_bytes(a)
                })
            }),
            _ => return self.err(format!("unsupported numpy scalar type `{descr}`")),
        };
        if !bytes.len().is_multiple_of(size) {
            return self.err(format!(
                "{} bytes is not a whole number of `{descr}` values",
                bytes.len()
            ));
        }
        Ok(bytes.chunks_exact(size).map(|c| f(c, big)).collect())
    }

    fn reduce(&mut self) -> Result<(), PickleError> {
        let args = self.pop()?;
        let func = self.pop()?;
        let Node::Global(g) = self.nodes[func] else {
            return self.err("REDUCE on something that is not an allowed numpy global");
        };
        let Node::Tuple(args) = self.nodes[args].clone() else {
            return self.err("REDUCE arguments are not a tuple");
        };
        match g {
            Global::Reconstruct => {
                if args.len() != 3
                    || !matches!(self.nodes[args[0]], Node::Global(Global::NdarrayType))
                {
                    return self.err("_reconstruct must be called as (ndarray, shape, typecode)");
                }
                self.push(Node::Array {
                    shape: vec![0],
                    items: Vec::new(),
                })
            }
            Global::DtypeType => {
                let Some(descr) = args.first().and_then(|&a| self.str_of(a)) else {
                    return self.err("numpy.dtype needs a type string");
                };
                let descr = descr.to_string();
                self.push(Node::Dtype { descr, order: b'=' })
            }
            Global::Scalar => {
                if args.len() != 2 {
                    return self.err("numpy scalar needs (dtype, bytes)");
                }
                let Node::Dtype { descr, order } = self.nodes[args[0]].clone() else {
                    return self.err("numpy scalar without a dtype");
                };
                let bytes = match &self.nodes[args[1]] {
                    Node::Val(PyValue::Bytes(b)) => b.clone(),
                    // Protocol 2 pickles bytes as latin-1 str; accept it.
                    Node::Val(PyValue::Str(s)) => s.chars().map(|c| c as u32 as u8).collect(),
                    _ => return self.err("numpy scalar payload is not bytes"),
                };
                let mut vals = self.decode_raw(&descr, order, &bytes)?;
                if vals.len() != 1 {
                    return self.err("numpy scalar payload is not exactly one value");
                }
                self.push_val(vals.remove(0))
            }
            Global::NdarrayType => self.err("numpy.ndarray is not callable here"),
        }
    }

    fn build(&mut self) -> Result<(), PickleError> {
        let state = self.pop()?;
        let target = self.top()?;
        let Node::Tuple(st) = self.nodes[state].clone() else {
            return self.err("BUILD state is not a tuple");
        };
        match self.nodes[target].clone() {
            Node::Dtype { descr, .. } => {
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
                let order = st
                    .get(1)
                    .and_then(|&i| self.str_of(i))
                    .and_then(|s| s.bytes().next())
                    .unwrap_or(b'=');
                self.nodes[target] = Node::Dtype { descr, order };
                Ok(())
            }
            Node::Array { .. } => {
                // (version, shape, dtype, is_fortran, data)
                if st.len() != 5 {
                    return self.err("ndarray state must have 5 fields");
                }
                let Node::Tuple(shape_ids) = self.nodes[st[1]].clone() else {
                    return self.err("ndarray shape is not a tuple");
                };
                let mut shape = Vec::with_capacity(shape_ids.len());
                for id in shape_ids {
                    match self.int_of(id) {
                        Some(n) if n >= 0 => shape.push(n as usize),
                        _ => return self.err("ndarray shape entry is not a non-negative int"),
                    }
                }
                let n: usize = shape
                    .iter()
                    .try_fold(1usize, |a, &b| a.checked_mul(b))
                    .map_or_else(|| self.err("ndarray shape overflows"), Ok)?;
                let Node::Dtype { descr, order } = self.nodes[st[2]].clone() else {
                    return self.err("ndarray dtype missing");
                };
                if self.int_of(st[3]) != Some(0) {
                    return self.err("Fortran-ordered object arrays are not supported");
                }
                let items = match self.nodes[st[4]].clone() {
                    Node::List(ids) => ids,
                    Node::Val(PyValue::Bytes(b)) => {
                        let vals = self.decode_raw(&descr, order, &b)?;
                        let mut ids = Vec::with_capacity(vals.len());
                        for v in vals {
                            self.push_val(v)?;
                            ids.push(self.pop()?);
                        }
                        ids
                    }
                    _ => return self.err("ndarray data is neither a list nor bytes"),
                };
                if items.len() != n {
                    return self.err(format!(
                        "ndarray of shape {shape:?} holds {} items",
                        items.len()
                    ));
                }
                self.nodes[target] = Node::Array { shape, items };
                Ok(())
            }
            _ => self.err("BUILD on an object that is not a numpy array or dtype"),
        }
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.err(format!("unknown protocol {proto}"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME length: framing is transparent here
                }
                b'.' => {
                    let top = self.pop()?;
                    return Ok(top);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (self.str_of(module), self.str_of(name)) else {
                        return self.err("STACK_GLOBAL needs two strings");
                    };
                    let (m, n) = (m.to_string(), n.to_string());
                    self.global(&m, &n)?;
                }
                b'q' => {
                    let k = self.u8()? as usize;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as usize;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len();
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as usize;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()? as usize;
                    self.memo_get(k)?;
                }
                b'N' => self.push_val(PyValue::None)?,
                0x88 => self.push_val(PyValue::Bool(true))?,
                0x89 => self.push_val(PyValue::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push_val(PyValue::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push_val(PyValue::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push_val(PyValue::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return self.err("integer wider than 64 bits");
                    }
                    let b = self.take(n)?;
                    let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    a[..n].copy_from_slice(b);
                    self.push_val(PyValue::Int(i64::from_le_bytes(a)))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push_val(PyValue::Float(f64::from_be_bytes(a)))?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    self.string(n)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    self.string(n)?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push_val(PyValue::Bytes(b))?;
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push_val(PyValue::Bytes(b))?;
                }
                b')' => self.push(Node::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items))?;
                }
                b']' => self.push(Node::List(Vec::new()))?,
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    match &mut self.nodes[list] {
                        Node::List(v) => v.push(item),
                        _ => return self.err("APPEND to something that is not a list"),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    match &mut self.nodes[list] {
                        Node::List(v) => v.extend(items),
                        _ => return self.err("APPENDS to something that is not a list"),
                    }
                }
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, vec![k, v])?;
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    if kv.len() % 2 != 0 {
                        return self.err("SETITEMS with an odd number of items");
                    }
                    let d = self.top()?;
                    self.set_items(d, kv)?;
                }
                b'R' => self.reduce()?,
                b'b' => self.build()?,
                other => {
                    return self.err(format!("refused opcode 0x{other:02x}"));
                }
            }
        }
    }

    fn set_items(&mut self, dict: Id, kv: Vec<Id>) -> Result<(), PickleError> {
        // Python dicts replace an existing key in place.
        let keys: Vec<PyValue> = kv
            .chunks_exact(2)
            .map(|p| self.to_value(p[0], 0))
            .collect::<Result<_, _>>()?;
        let existing: Vec<PyValue> = match &self.nodes[dict] {
            Node::Dict(pairs) => pairs
                .iter()
                .map(|(k, _)| self.to_value(*k, 0))
                .collect::<Result<_, _>>()?,
            _ => return self.err("SETITEM on something that is not a dict"),
        };
        let Node::Dict(pairs) = &mut self.nodes[dict] else {
            return Err(PickleError {
                offset: self.op_pos,
                detail: "SETITEM on something that is not a dict".into(),
            });
        };
        let mut existing = existing;
        for (pair, key) in kv.chunks_exact(2).zip(keys) {
            if let Some(i) = existing.iter().position(|k| *k == key) {
                pairs[i].1 = pair[1];
            } else {
                pairs.push((pair[0], pair[1]));
                existing.push(key);
            }
        }
        Ok(())
    }

    fn to_value(&self, id: Id, depth: usize) -> Result<PyValue, PickleError> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep (or a self-referencing container)");
        }
        let conv = |ids: &[Id]| -> Result<Vec<PyValue>, PickleError> {
            ids.iter().map(|&i| self.to_value(i, depth + 1)).collect()
        };
        Ok(match &self.nodes[id] {
            Node::Val(v) => v.clone(),
            Node::List(ids) => PyValue::List(conv(ids)?),
            Node::Tuple(ids) => PyValue::Tuple(conv(ids)?),
            Node::Dict(pairs) => PyValue::Dict(
                pairs
                    .iter()
                    .map(|&(k, v)| Ok((self.to_value(k, depth + 1)?, self.to_value(v, depth + 1)?)))
                    .collect::<Result<_, PickleError>>()?,
            ),
            Node::Array { shape, items } => PyValue::Array {
                shape: shape.clone(),
                items: conv(items)?,
            },
            Node::Global(_) | Node::Dtype { .. } => {
                return self.err("a numpy type object is not a value");
            }
        })
    }
}

/// Reads one pickle (the payload of an `.npy` object array) into a [`PyValue`].
///
/// # Errors
/// A [`PickleError`] for truncated data, unknown opcodes, refused globals or structures that
/// are not what numpy writes.
///
/// # Examples
/// ```
/// use segvol_io::pickle::{read_pickle, PyValue};
/// // pickle.dumps([1, None], protocol=3)
/// let bytes = b"\x80\x03]q\x00(K\x01Ne.";
/// assert_eq!(read_pickle(bytes)?, PyValue::List(vec![PyValue::Int(1), PyValue::None]));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub fn read_pickle(data: &[u8]) -> Result<PyValue, PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        op_pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = m.run()?;
    m.to_value(root, 0)
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.detail)
    }
}
impl std::error::Error for PickleError {}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Writes a numpy object array (`shape`, `items` in C order) as numpy 1.26.3's
/// `pickle.dump(array, protocol=3)` does, byte for byte: the same opcodes, memo numbering,
/// batching and `numpy.core.multiarray` globals. `Int` leaves become `numpy.int64` scalars, as in
/// the challenge files; strings are memoised by value (numpy's are shared literals).
pub fn write_object_array(shape: &[usize], items: &[PyValue]) -> Vec<u8> {
    let mut w = Writer::default();
    w.out.extend_from_slice(&[0x80, 3]);
    // _reconstruct(ndarray, (0,), b'b')
    w.global_ref("numpy.core.multiarray", "_reconstruct");
    w.global_ref("numpy", "ndarray");
    w.int(0);
    w.out.push(0x85);
    w.put();
    w.bytes(b"b");
    w.out.push(0x87);
    w.put();
    w.out.push(b'R');
    w.put();
    // state (1, shape, dtype('O8'), False, [items])
    w.out.push(b'(');
    w.int(1);
    w.tuple_of_ints(shape);
    w.dtype("O8", "|", 63);
    w.out.push(0x89);
    w.out.push(b']');
    w.put();
    w.batch_appends(items);
    w.out.push(b't');
    w.put();
    w.out.push(b'b');
    w.out.push(b'.');
    w.out
}

#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    next_memo: usize,
    globals: HashMap<String, usize>,
    strings: HashMap<String, usize>,
    dtypes: HashMap<String, usize>,
}

impl Writer {
    fn put(&mut self) -> usize {
        let k = self.next_memo;
        if k < 256 {
            self.out.extend_from_slice(&[b'q', k as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&(k as u32).to_le_bytes());
        }
        self.next_memo += 1;
        k
    }
    fn get(&mut self, k: usize) {
        if k < 256 {
            self.out.extend_from_slice(&[b'h', k as u8]);
        } else {
            self.out.push(b'j');
            self.out.extend_from_slice(&(k as u32).to_le_bytes());
        }
    }
    fn global_ref(&mut self, module: &str, name: &str) {
        let key = format!("{module}\n{name}\n");
        if let Some(&k) = self.globals.get(&key) {
            self.get(k);
        } else {
            self.out.push(b'c');
            self.out.extend_from_slice(key.as_bytes());
            let k = self.put();
            self.globals.insert(key, k);
        }
    }
    /// A Python int, as `save_long` writes it for protocol ≥ 2.
    fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&v) {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // LONG1 with the minimal two's-complement encoding, as pickle.encode_long.
            let bytes = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let last = bytes[n - 1];
                let prev_sign = bytes[n - 2] & 0x80;
                if (last == 0 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.out.extend_from_slice(&[0x8a, n as u8]);
            self.out.extend_from_slice(&bytes[..n]);
        }
    }
    fn str(&mut self, s: &str) {
        if let Some(&k) = self.strings.get(s) {
            self.get(k);
            return;
        }
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        let k = self.put();
        self.strings.insert(s.to_string(), k);
    }
    fn bytes(&mut self, b: &[u8]) {
        if b.len() < 256 {
            self.out.extend_from_slice(&[b'C', b.len() as u8]);
        } else {
            self.out.push(b'B');
            self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(b);
        self.put();
    }
    fn tuple_of_ints(&mut self, v: &[usize]) {
        match v.len() {
            0 => {
                self.out.push(b')');
                return;
            }
            1..=3 => {
                for &x in v {
                    self.int(x as i64);
                }
                self.out.push(0x84 + v.len() as u8);
            }
            _ => {
                self.out.push(b'(');
                for &x in v {
                    self.int(x as i64);
                }
                self.out.push(b't');
            }
        }
        self.put();
    }
    /// `numpy.dtype(descr, False, True)` with its BUILD state, memoised per descr.
    fn dtype(&mut self, descr: &str, order: &str, flags: i64) {
        if let Some(&k) = self.dtypes.get(descr) {
            self.get(k);
            return;
        }
        self.global_ref("numpy", "dtype");
        self.str(descr);
        self.out.extend_from_slice(&[0x89, 0x88, 0x87]);
        self.put();
        self.out.push(b'R');
        let k = self.put();
        self.dtypes.insert(descr.to_string(), k);
        self.out.push(b'(');
        self.int(3);
        self.str(order);
        self.out.extend_from_slice(b"NNN");
        self.int(-1);
        self.int(-1);
        self.int(flags);
        self.out.push(b't');
        self.put();
        self.out.push(b'b');
    }
    fn value(&mut self, v: &PyValue) {
        match v {
            PyValue::None => self.out.push(b'N'),
            PyValue::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            PyValue::Int(i) => {
                // numpy.int64 scalar: scalar(dtype('i8'), <8 bytes>)
                self.global_ref("numpy.core.multiarray", "scalar");
                self.dtype("i8", "<", 0);
                self.bytes(&i.to_le_bytes());
                self.out.push(0x86);
                self.put();
                self.out.push(b'R');
                self.put();
            }
            PyValue::Float(f) => {
                self.global_ref("numpy.core.multiarray", "scalar");
                self.dtype("f8", "<", 0);
                self.bytes(&f.to_le_bytes());
                self.out.push(0x86);
                self.put();
                self.out.push(b'R');
                self.put();
            }
            PyValue::Str(s) => self.str(s),
            PyValue::Bytes(b) => self.bytes(b),
            PyValue::List(items) => {
                self.out.push(b']');
                self.put();
                self.batch_appends(items);
            }
            PyValue::Tuple(items) => {
                if items.is_empty() {
                    self.out.push(b')');
                    return;
                }
                if items.len() <= 3 {
                    for it in items {
                        self.value(it);
                    }
                    self.out.push(0x84 + items.len() as u8);
                } else {
                    self.out.push(b'(');
                    for it in items {
                        self.value(it);
                    }
                    self.out.push(b't');
                }
                self.put();
            }
            PyValue::Dict(pairs) => {
                self.out.push(b'}');
                self.put();
                for chunk in pairs.chunks(1000) {
                    if chunk.len() == 1 {
                        self.value(&chunk[0].0);
                        self.value(&chunk[0].1);
                        self.out.push(b's');
                    } else {
                        self.out.push(b'(');
                        for (k, v) in chunk {
                            self.value(k);
                            self.value(v);
                        }
                        self.out.push(b'u');
                    }
                }
            }
            // Nested object arrays never occur in challenge files; they are written as lists
            // rather than splicing a second array reduce into this memo space.
            PyValue::Array { items, .. } => self.value(&PyValue::List(items.clone())),
        }
    }
    /// `Pickler._batch_appends`: one APPEND for a single item, MARK…APPENDS per 1000 otherwise.
    fn batch_appends(&mut self, items: &[PyValue]) {
        for chunk in items.chunks(1000) {
            if chunk.len() == 1 {
                self.value(&chunk[0]);
                self.out.push(b'a');
            } else {
                self.out.push(b'(');
                for it in chunk {
                    self.value(it);
                }
                self.out.push(b'e');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_os_system() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ('echo hi',)), protocol 3.
        let evil = b"\x80\x03cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
        let e = read_pickle(evil).unwrap_err();
        assert!(e.detail.contains("refused global `posix.system`"), "{e}");
        assert_eq!(e.offset, 2);
    }

    #[test]
    fn truncated_and_garbage_streams_are_errors_not_panics() {
        let ok = write_object_array(&[2], &[PyValue::Int(5), PyValue::Str("fg".into())]);
        for cut in 0..ok.len() {
            assert!(read_pickle(&ok[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read_pickle(b"\x80\x03h\x05.").is_err()); // memo get of nothing
        assert!(read_pickle(b"\x80\x03e.").is_err()); // APPENDS without MARK
        assert!(read_pickle(b"\x80\x03K\x01K\x02s.").is_err()); // SETITEM on an int
    }

    #[test]
    fn round_trip_of_written_arrays() {
        let items = vec![
            PyValue::Dict(vec![
                (
                    PyValue::Str("fg".into()),
                    PyValue::List(vec![PyValue::List(vec![
                        PyValue::Int(1),
                        PyValue::Int(300),
                        PyValue::Int(70000),
                    ])]),
                ),
                (PyValue::Str("bg".into()), PyValue::List(vec![])),
            ]),
            PyValue::None,
            PyValue::Int(-5_000_000_000),
        ];
        let bytes = write_object_array(&[3], &items);
        assert_eq!(
            read_pickle(&bytes).unwrap(),
            PyValue::Array {
                shape: vec![3],
                items
            }
        );
    }

    #[test]
    fn plain_python_ints_and_protocol_4_framing() {
        // pickle.dumps({'a': [1, 300, 70000, -2, 2**40]}, protocol=4)
        let b = b"\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01M,\x01J\x70\x11\x01\x00J\xfe\xff\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01es.";
        let v = read_pickle(b).unwrap();
        let list = v.get("a").unwrap().as_seq().unwrap();
        let ints: Vec<i64> = list.iter().map(|x| x.as_int().unwrap()).collect();
        assert_eq!(ints, vec![1, 300, 70000, -2, 1 << 40]);
    }
}
