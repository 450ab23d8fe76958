//! A small pickle virtual machine: enough of protocols 2–4 to read PyTorch state dicts.
//!
//! It builds plain [`Value`]s instead of Python objects. Calls (`REDUCE`, `NEWOBJ`) are kept as
//! [`Value::Call`] except the few that a state dict needs interpreted: `collections.OrderedDict()`
//! becomes an empty [`Value::Dict`], `torch._utils._rebuild_tensor_v2` becomes a
//! [`Value::Tensor`] and `torch._utils._rebuild_parameter` unwraps to its tensor.
//!
//! Bounded by construction, whatever the input:
//! - values live in an arena while the pickle runs; the stack, the memo and containers hold
//!   indices into it, so a memoised value fetched many times (`GET`) is shared, not copied, and
//!   later changes to a memoised container are seen by later fetches, as in Python. Each opcode
//!   adds at most one value and its payload bytes come from the input, so memory while running
//!   is linear in the input length;
//! - the finished value is copied out of the arena as a tree of at most [`MAX_DEPTH`] levels
//!   (a container holding itself is an error, not an endless loop) and at most
//!   [`expansion_budget`] bytes, so sharing cannot multiply the output either.

use std::collections::HashMap;

/// The deepest nesting of containers a pickle may decode to (a state dict needs about 5).
pub(crate) const MAX_DEPTH: usize = 64;

/// Bytes the decoded tree of a pickle of `input_len` bytes may take: 16 bytes per input byte
/// plus 64 KiB, far above what a state dict's sharing (storage type names, device strings)
/// needs, and far below what a value referenced over and over could grow to.
pub(crate) fn expansion_budget(input_len: usize) -> usize {
    input_len.saturating_mul(16).saturating_add(64 * 1024)
}

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

impl Value {
    /// A short description for error messages (never the whole, possibly huge, value).
    pub(crate) fn describe(&self) -> String {
        let text = format!("{self:?}");
        match text.char_indices().nth(80) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
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

/// Index of a value in the arena.
type Id = usize;

/// A value in the arena: containers refer to their items by [`Id`].
#[derive(Debug)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global { module: String, name: String },
    PersistentId(Id),
    Call { callable: Id, args: Id },
    Tensor { storage: Id, storage_offset: usize, shape: Vec<usize>, strides: Vec<usize> },
}

/// One stack slot: a value or a `MARK`.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Mark,
    Value(Id),
}

/// Decodes one pickle starting at `*pos` in `data`, leaving `*pos` just after its `STOP`.
///
/// # Errors
/// Truncated data, an unsupported opcode, an ill-formed stack, or a result nested deeper than
/// [`MAX_DEPTH`] or larger than [`expansion_budget`] of the whole buffer, with the byte offset.
pub(crate) fn unpickle(data: &[u8], pos: &mut usize) -> PResult<Value> {
    let mut machine =
        Machine { data, pos: *pos, stack: Vec::new(), memo: HashMap::new(), nodes: Vec::new() };
    let root = machine.run()?;
    let mut budget = expansion_budget(data.len());
    let value = machine.tree(root, 0, &mut budget).map_err(|m| machine.err(machine.pos, m))?;
    *pos = machine.pos;
    Ok(value)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Id>,
    nodes: Vec<Node>,
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

    fn string(&mut self, n: usize, at: usize) -> PResult<Node> {
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map(Node::Str).map_err(|_| self.err(at, "string is not utf-8"))
    }

    fn add(&mut self, node: Node) -> Id {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn push(&mut self, node: Node) {
        let id = self.add(node);
        self.stack.push(Slot::Value(id));
    }

    fn pop(&mut self, at: usize) -> PResult<Id> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.err(at, "expected a value, found a mark")),
            None => Err(self.err(at, "stack underflow")),
        }
    }

    fn top(&self, at: usize) -> PResult<Id> {
        match self.stack.last() {
            Some(Slot::Value(v)) => Ok(*v),
            _ => Err(self.err(at, "expected a value on top")),
        }
    }

    /// Pops everything down to the last mark, returning the values in push order.
    fn pop_mark(&mut self, at: usize) -> PResult<Vec<Id>> {
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
        let id = self.top(at).map_err(|_| self.err(at, "memo put with no value on top"))?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u32, at: usize) -> PResult<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(Slot::Value(id));
                Ok(())
            }
            None => Err(self.err(at, format!("memo key {key} not found"))),
        }
    }

    fn set_items(&mut self, items: Vec<Id>, at: usize) -> PResult<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(at, "odd number of items for a dict"));
        }
        let target = self.top(at)?;
        let Node::Dict(entries) = &mut self.nodes[target] else {
            return Err(self.err(at, "SETITEM(S) on a non-dict"));
        };
        entries.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
        Ok(())
    }

    fn append(&mut self, items: Vec<Id>, at: usize) -> PResult<()> {
        let target = self.top(at)?;
        match &mut self.nodes[target] {
            Node::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(self.err(at, "APPEND(S) on a non-list")),
        }
    }

    fn run(&mut self) -> PResult<Id> {
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
                b'}' => self.push(Node::Dict(Vec::new())),
                b']' => self.push(Node::List(Vec::new())),
                b')' => self.push(Node::Tuple(Vec::new())),
                b'N' => self.push(Node::None),
                0x88 => self.push(Node::Bool(true)),
                0x89 => self.push(Node::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.push(Node::Int(i64::from(v)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Node::Int(i64::from(v)));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Node::Int(i64::from(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(long_value(&bytes));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Node::Float(v));
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
                    self.push(Node::Bytes(bytes));
                }
                b'U' | b'C' => {
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(Node::Bytes(bytes));
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
                    self.push(Node::Global { module, name });
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    match (&self.nodes[module], &self.nodes[name]) {
                        (Node::Str(module), Node::Str(name)) => {
                            let global =
                                Node::Global { module: module.clone(), name: name.clone() };
                            self.push(global);
                        }
                        _ => return Err(self.err(at, "STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    self.push(Node::PersistentId(pid));
                }
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push(Node::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at)?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark(at)?;
                    self.push(Node::List(items));
                }
                b'd' => {
                    let items = self.pop_mark(at)?;
                    self.push(Node::Dict(Vec::new()));
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
                    let id = self.reduce(callable, args).map_err(|m| self.err(at, m))?;
                    self.stack.push(Slot::Value(id));
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

    fn is_global(&self, id: Id, module: &str, name: &str) -> bool {
        matches!(&self.nodes[id], Node::Global { module: m, name: n } if m == module && n == name)
    }

    /// Applies a callable to its arguments, interpreting the calls a state dict uses.
    fn reduce(&mut self, callable: Id, args: Id) -> std::result::Result<Id, String> {
        if self.is_global(callable, "collections", "OrderedDict") {
            return Ok(self.add(Node::Dict(Vec::new())));
        }
        if self.is_global(callable, "torch._utils", "_rebuild_tensor_v2")
            || self.is_global(callable, "torch._utils", "_rebuild_tensor")
        {
            let Node::Tuple(items) = &self.nodes[args] else {
                return Err("_rebuild_tensor arguments are not a tuple".into());
            };
            let [storage, offset, size, stride, ..] = items[..] else {
                return Err(format!("_rebuild_tensor takes 4+ arguments, got {}", items.len()));
            };
            let storage = match &self.nodes[storage] {
                Node::PersistentId(pid) => *pid,
                _ => return Err("tensor storage is not a persistent id".into()),
            };
            let storage_offset = match self.nodes[offset] {
                Node::Int(x) if x >= 0 => {
                    usize::try_from(x).map_err(|_| format!("storage offset {x} too large"))?
                }
                ref other => return Err(format!("bad storage offset {other:?}")),
            };
            let shape = self.usize_tuple(size, "tensor size")?;
            let strides = self.usize_tuple(stride, "tensor stride")?;
            if shape.len() != strides.len() {
                return Err(format!("size {shape:?} and stride {strides:?} differ in rank"));
            }
            return Ok(self.add(Node::Tensor { storage, storage_offset, shape, strides }));
        }
        if self.is_global(callable, "torch._utils", "_rebuild_parameter") {
            return match &self.nodes[args] {
                Node::Tuple(items) if !items.is_empty() => Ok(items[0]),
                _ => Err("_rebuild_parameter without arguments".into()),
            };
        }
        Ok(self.add(Node::Call { callable, args }))
    }

    fn usize_tuple(&self, id: Id, what: &str) -> std::result::Result<Vec<usize>, String> {
        let Node::Tuple(items) = &self.nodes[id] else {
            return Err(format!("{what} is not a tuple"));
        };
        items
            .iter()
            .map(|&i| match self.nodes[i] {
                Node::Int(x) => usize::try_from(x).map_err(|_| format!("negative {what}: {x}")),
                _ => Err(format!("{what} holds a non-integer")),
            })
            .collect()
    }

    /// Copies value `id` out of the arena as a tree, charging its size to `budget`.
    fn tree(&self, id: Id, depth: usize, budget: &mut usize) -> std::result::Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH} levels (or a cycle)"));
        }
        let payload = match &self.nodes[id] {
            Node::Str(s) => s.len(),
            Node::Bytes(b) => b.len(),
            Node::Global { module, name } => module.len() + name.len(),
            Node::Tensor { shape, .. } => 2 * 8 * shape.len(),
            _ => 0,
        };
        let cost = std::mem::size_of::<Value>() + payload;
        *budget = budget.checked_sub(cost).ok_or_else(|| {
            "the pickle's shared values expand beyond the decoding budget".to_string()
        })?;
        let sub = |id: Id, budget: &mut usize| self.tree(id, depth + 1, budget);
        let list = |ids: &[Id], budget: &mut usize| {
            ids.iter().map(|&i| sub(i, budget)).collect::<std::result::Result<Vec<_>, _>>()
        };
        Ok(match &self.nodes[id] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::Float(f) => Value::Float(*f),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes(b) => Value::Bytes(b.clone()),
            Node::Tuple(items) => Value::Tuple(list(items, budget)?),
            Node::List(items) => Value::List(list(items, budget)?),
            Node::Dict(entries) => Value::Dict(
                entries
                    .iter()
                    .map(|&(k, v)| Ok((sub(k, budget)?, sub(v, budget)?)))
                    .collect::<std::result::Result<_, String>>()?,
            ),
            Node::Global { module, name } => {
                Value::Global { module: module.clone(), name: name.clone() }
            }
            Node::PersistentId(pid) => Value::PersistentId(Box::new(sub(*pid, budget)?)),
            Node::Call { callable, args } => Value::Call {
                callable: Box::new(sub(*callable, budget)?),
                args: Box::new(sub(*args, budget)?),
            },
            Node::Tensor { storage, storage_offset, shape, strides } => Value::Tensor(TensorRef {
                storage: Box::new(sub(*storage, budget)?),
                storage_offset: *storage_offset,
                shape: shape.clone(),
                strides: strides.clone(),
            }),
        })
    }
}

/// Decodes a `LONG1` payload (little-endian two's complement).
fn long_value(bytes: &[u8]) -> Node {
    if bytes.is_empty() {
        return Node::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        return Node::Int(i64::from_le_bytes(buf));
    }
    // Too large for i64 (e.g. the legacy magic number): keep the raw bytes.
    Node::Bytes(bytes.to_vec())
}
