//! A small pickle virtual machine: enough of protocols 2–4 to read PyTorch state dicts.
//!
//! It builds plain [`Value`]s instead of Python objects. Calls (`REDUCE`, `NEWOBJ`) are kept as
//! [`Value::Call`] except the few that a state dict needs interpreted: `collections.OrderedDict()`
//! becomes an empty [`Value::Dict`], `torch._utils._rebuild_tensor_v2` becomes a
//! [`Value::Tensor`] and `torch._utils._rebuild_parameter` unwraps to its tensor.
//! Memoised values are copied at `PUT` time: a later mutation of a memoised dict is not seen by a
//! later `GET`, which never matters for state dicts (their memoised containers are never
//! fetched again after being filled).

use std::collections::HashMap;

/// A decoded pickle value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A global reference `module.name`.
    Global { module: String, name: String },
    /// The result of `persistent_load(pid)`.
    PersistentId(Box<Value>),
    /// A call that was not interpreted.
    Call { callable: Box<Value>, args: Box<Value> },
    /// A tensor view of a storage.
    Tensor(TensorRef),
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorRef {
    /// The persistent id of the storage (a tuple `('storage', type, key, location, numel)`).
    pub(crate) storage: Box<Value>,
    /// Offset of the first element, in elements.
    pub(crate) storage_offset: usize,
    /// The tensor's shape.
    pub(crate) shape: Vec<usize>,
    /// The tensor's strides, in elements.
    pub(crate) strides: Vec<usize>,
}

/// A pickle decoding failure at a byte offset of the input buffer.
#[derive(Debug, PartialEq)]
pub(crate) struct PickleError {
    /// Offset of the opcode (or of the end of the data, when it is truncated).
    pub(crate) offset: u64,
    /// What went wrong.
    pub(crate) message: String,
}

type PResult<T> = std::result::Result<T, PickleError>;

/// One stack slot: a value or a `MARK`.
#[derive(Clone, Debug)]
enum Slot {
    Mark,
    Value(Value),
}

/// Decodes one pickle starting at `*pos` in `data`, leaving `*pos` just after its `STOP`.
///
/// # Errors
/// Truncated data, an unsupported opcode or an ill-formed stack, with the byte offset.
pub(crate) fn unpickle(data: &[u8], pos: &mut usize) -> PResult<Value> {
    let mut machine = Machine { data, pos: *pos, stack: Vec::new(), memo: HashMap::new() };
    let value = machine.run()?;
    *pos = machine.pos;
    Ok(value)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> PickleError {
        PickleError { offset: offset as u64, message: message.into() }
    }

    fn take(&mut self, n: usize) -> PResult<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.data.len());
        match end {
            Some(end) => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => Err(self.err(
                self.data.len(),
                format!("truncated pickle: needed {n} bytes at offset {}", self.pos),
            )),
        }
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn line(&mut self) -> PResult<String> {
        let start = self.pos;
        let rest = &self.data[start..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err(self.data.len(), "truncated pickle: unterminated line"));
        };
        self.pos = start + n + 1;
        String::from_utf8(rest[..n].to_vec()).map_err(|_| self.err(start, "line is not utf-8"))
    }

    fn string(&mut self, n: usize, at: usize) -> PResult<Value> {
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map(Value::Str).map_err(|_| self.err(at, "string is not utf-8"))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Slot::Value(v));
    }

    fn pop(&mut self, at: usize) -> PResult<Value> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.err(at, "expected a value, found a mark")),
            None => Err(self.err(at, "stack underflow")),
        }
    }

    fn top(&mut self, at: usize) -> PResult<&mut Value> {
        match self.stack.last_mut() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err(PickleError { offset: at as u64, message: "expected a value on top".into() }),
        }
    }

    /// Pops everything down to the last mark, returning the values in push order.
    fn pop_mark(&mut self, at: usize) -> PResult<Vec<Value>> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return Err(self.err(at, "no mark on the stack"));
        };
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .filter_map(|s| match s {
                Slot::Value(v) => Some(v),
                Slot::Mark => None,
            })
            .collect())
    }

    fn memo_put(&mut self, key: u32, at: usize) -> PResult<()> {
        let v = match self.stack.last() {
            Some(Slot::Value(v)) => v.clone(),
            _ => return Err(self.err(at, "memo put with no value on top")),
        };
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32, at: usize) -> PResult<()> {
        match self.memo.get(&key) {
            Some(v) => {
                let v = v.clone();
                self.push(v);
                Ok(())
            }
            None => Err(self.err(at, format!("memo key {key} not found"))),
        }
    }

    fn set_items(&mut self, items: Vec<Value>, at: usize) -> PResult<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(at, "odd number of items for a dict"));
        }
        let target = self.top(at)?;
        let Value::Dict(entries) = target else {
            return Err(PickleError {
                offset: at as u64,
                message: "SETITEM(S) on a non-dict".into(),
            });
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>, at: usize) -> PResult<()> {
        match self.top(at)? {
            Value::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(self.err(at, "APPEND(S) on a non-list")),
        }
    }

    fn run(&mut self) -> PResult<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(at, format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.le::<8>()?;
                }
                b'.' => return self.pop(at),
                b'(' => self.stack.push(Slot::Mark),
                b'}' => self.push(Value::Dict(Vec::new())),
                b']' => self.push(Value::List(Vec::new())),
                b')' => self.push(Value::Tuple(Vec::new())),
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(i64::from(v)));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(long_value(&bytes));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let v = self.string(n, at)?;
                    self.push(v);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n, at)?;
                    self.push(v);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?);
                    let n = usize::try_from(n).map_err(|_| self.err(at, "string too long"))?;
                    let v = self.string(n, at)?;
                    self.push(v);
                }
                b'T' | b'B' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes));
                }
                b'U' | b'C' => {
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes));
                }
                b'q' => {
                    let key = u32::from(self.u8()?);
                    self.memo_put(key, at)?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.memo_put(key, at)?;
                }
                0x94 => {
                    let key = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.memo_put(key, at)?;
                }
                b'h' => {
                    let key = u32::from(self.u8()?);
                    self.memo_get(key, at)?;
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.le()?);
                    self.memo_get(key, at)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.push(Value::Global { module, name });
                        }
                        _ => return Err(self.err(at, "STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    self.push(Value::PersistentId(Box::new(pid)));
                }
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(self.err(at, "stack underflow"));
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at)?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark(at)?;
                    self.push(Value::List(items));
                }
                b'd' => {
                    let items = self.pop_mark(at)?;
                    self.push(Value::Dict(Vec::new()));
                    self.set_items(items, at)?;
                }
                b'a' => {
                    let v = self.pop(at)?;
                    self.append(vec![v], at)?;
                }
                b'e' => {
                    let items = self.pop_mark(at)?;
                    self.append(items, at)?;
                }
                b's' => {
                    let v = self.pop(at)?;
                    let k = self.pop(at)?;
                    self.set_items(vec![k, v], at)?;
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    self.set_items(items, at)?;
                }
                b'R' | 0x81 => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let v = reduce(callable, args).map_err(|m| self.err(at, m))?;
                    self.push(v);
                }
                b'b' => {
                    // The state of an `OrderedDict` (its `_metadata`) or of another object is
                    // not needed: keep the object as it is.
                    self.pop(at)?;
                    self.top(at)?;
                }
                b'0' => {
                    self.pop(at)?;
                }
                other => {
                    return Err(self.err(at, format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }
}

/// Decodes a `LONG1` payload (little-endian two's complement).
fn long_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        return Value::Int(i64::from_le_bytes(buf));
    }
    // Too large for i64 (e.g. the legacy magic number): keep the raw bytes.
    Value::Bytes(bytes.to_vec())
}

fn is_global(v: &Value, module: &str, name: &str) -> bool {
    matches!(v, Value::Global { module: m, name: n } if m == module && n == name)
}

fn usize_tuple(v: &Value, what: &str) -> std::result::Result<Vec<usize>, String> {
    let Value::Tuple(items) = v else {
        return Err(format!("{what} is not a tuple: {v:?}"));
    };
    items
        .iter()
        .map(|i| match i {
            Value::Int(x) => usize::try_from(*x).map_err(|_| format!("negative {what}: {x}")),
            other => Err(format!("{what} holds a non-integer: {other:?}")),
        })
        .collect()
}

/// Applies a callable to its arguments, interpreting the calls a state dict uses.
fn reduce(callable: Value, args: Value) -> std::result::Result<Value, String> {
    if is_global(&callable, "collections", "OrderedDict") {
        return Ok(Value::Dict(Vec::new()));
    }
    if is_global(&callable, "torch._utils", "_rebuild_tensor_v2")
        || is_global(&callable, "torch._utils", "_rebuild_tensor")
    {
        let Value::Tuple(items) = args else {
            return Err("_rebuild_tensor arguments are not a tuple".into());
        };
        if items.len() < 4 {
            return Err(format!("_rebuild_tensor takes 4+ arguments, got {}", items.len()));
        }
        let storage = match &items[0] {
            Value::PersistentId(pid) => pid.clone(),
            other => return Err(format!("tensor storage is not a persistent id: {other:?}")),
        };
        let storage_offset = match items[1] {
            Value::Int(x) if x >= 0 => x as usize,
            ref other => return Err(format!("bad storage offset {other:?}")),
        };
        let shape = usize_tuple(&items[2], "tensor size")?;
        let strides = usize_tuple(&items[3], "tensor stride")?;
        if shape.len() != strides.len() {
            return Err(format!("size {shape:?} and stride {strides:?} differ in rank"));
        }
        return Ok(Value::Tensor(TensorRef { storage, storage_offset, shape, strides }));
    }
    if is_global(&callable, "torch._utils", "_rebuild_parameter") {
        if let Value::Tuple(mut items) = args
            && !items.is_empty()
        {
            return Ok(items.swap_remove(0));
        }
        return Err("_rebuild_parameter without arguments".into());
    }
    Ok(Value::Call { callable: Box::new(callable), args: Box::new(args) })
}
