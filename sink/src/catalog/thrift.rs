//! The Thrift binary protocol, just enough for a metastore client: a generic [`TValue`] tree that
//! encodes and decodes any struct, and one call/reply exchange over a plain (unframed) socket —
//! the Hive Metastore's default transport.
//!
//! Working on a generic tree keeps structs the client does not model (a table's storage
//! descriptor with SerDe, skew and bucketing info) intact when copied into a partition.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub const T_BOOL: u8 = 2;
pub const T_BYTE: u8 = 3;
pub const T_DOUBLE: u8 = 4;
pub const T_I16: u8 = 6;
pub const T_I32: u8 = 8;
pub const T_I64: u8 = 10;
pub const T_STRING: u8 = 11;
pub const T_STRUCT: u8 = 12;
pub const T_MAP: u8 = 13;
pub const T_SET: u8 = 14;
pub const T_LIST: u8 = 15;

const VERSION_1: u32 = 0x8001_0000;
const CALL: u32 = 1;
const REPLY: u32 = 2;
const EXCEPTION: u32 = 3;
/// Nesting and sizes above these mean a corrupt or hostile answer.
const MAX_DEPTH: usize = 64;
const MAX_LEN: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum TValue {
    Bool(bool),
    Byte(i8),
    Double(f64),
    I16(i16),
    I32(i32),
    I64(i64),
    Str(Vec<u8>),
    Struct(Vec<(i16, TValue)>),
    /// Key type, value type, entries.
    Map(u8, u8, Vec<(TValue, TValue)>),
    Set(u8, Vec<TValue>),
    List(u8, Vec<TValue>),
}

impl TValue {
    pub fn str(s: &str) -> TValue {
        TValue::Str(s.as_bytes().to_vec())
    }

    pub fn string_list<S: AsRef<str>>(items: &[S]) -> TValue {
        TValue::List(
            T_STRING,
            items.iter().map(|s| TValue::str(s.as_ref())).collect(),
        )
    }

    pub fn string_map(entries: &[(&str, &str)]) -> TValue {
        TValue::Map(
            T_STRING,
            T_STRING,
            entries
                .iter()
                .map(|(k, v)| (TValue::str(k), TValue::str(v)))
                .collect(),
        )
    }

    pub fn ttype(&self) -> u8 {
        match self {
            TValue::Bool(_) => T_BOOL,
            TValue::Byte(_) => T_BYTE,
            TValue::Double(_) => T_DOUBLE,
            TValue::I16(_) => T_I16,
            TValue::I32(_) => T_I32,
            TValue::I64(_) => T_I64,
            TValue::Str(_) => T_STRING,
            TValue::Struct(_) => T_STRUCT,
            TValue::Map(..) => T_MAP,
            TValue::Set(..) => T_SET,
            TValue::List(..) => T_LIST,
        }
    }

    /// A struct's field by id.
    pub fn field(&self, id: i16) -> Option<&TValue> {
        match self {
            TValue::Struct(fields) => fields.iter().find(|(i, _)| *i == id).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets (or adds) a struct's field.
    pub fn set_field(&mut self, id: i16, value: TValue) {
        if let TValue::Struct(fields) = self {
            match fields.iter_mut().find(|(i, _)| *i == id) {
                Some((_, v)) => *v = value,
                None => fields.push((id, value)),
            }
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            TValue::Str(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_list(&self) -> &[TValue] {
        match self {
            TValue::List(_, v) | TValue::Set(_, v) => v,
            _ => &[],
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TValue::Bool(b) => out.push(u8::from(*b)),
            TValue::Byte(b) => out.push(*b as u8),
            TValue::Double(d) => out.extend_from_slice(&d.to_bits().to_be_bytes()),
            TValue::I16(v) => out.extend_from_slice(&v.to_be_bytes()),
            TValue::I32(v) => out.extend_from_slice(&v.to_be_bytes()),
            TValue::I64(v) => out.extend_from_slice(&v.to_be_bytes()),
            TValue::Str(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
            TValue::Struct(fields) => {
                for (id, v) in fields {
                    out.push(v.ttype());
                    out.extend_from_slice(&id.to_be_bytes());
                    v.encode(out);
                }
                out.push(0);
            }
            TValue::Map(kt, vt, entries) => {
                out.push(*kt);
                out.push(*vt);
                out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
                for (k, v) in entries {
                    k.encode(out);
                    v.encode(out);
                }
            }
            TValue::Set(et, items) | TValue::List(et, items) => {
                out.push(*et);
                out.extend_from_slice(&(items.len() as i32).to_be_bytes());
                for v in items {
                    v.encode(out);
                }
            }
        }
    }

    pub fn decode(ttype: u8, r: &mut impl Read) -> io::Result<TValue> {
        decode(ttype, r, 0)
    }
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn read_n<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn read_len(r: &mut impl Read) -> io::Result<usize> {
    let n = i32::from_be_bytes(read_n(r)?);
    if n < 0 || n as usize > MAX_LEN {
        return Err(bad(format!("thrift length {n} out of range")));
    }
    Ok(n as usize)
}

fn decode(ttype: u8, r: &mut impl Read, depth: usize) -> io::Result<TValue> {
    if depth > MAX_DEPTH {
        return Err(bad("thrift value nested too deeply"));
    }
    Ok(match ttype {
        T_BOOL => TValue::Bool(read_n::<1>(r)?[0] != 0),
        T_BYTE => TValue::Byte(read_n::<1>(r)?[0] as i8),
        T_DOUBLE => TValue::Double(f64::from_bits(u64::from_be_bytes(read_n(r)?))),
        T_I16 => TValue::I16(i16::from_be_bytes(read_n(r)?)),
        T_I32 => TValue::I32(i32::from_be_bytes(read_n(r)?)),
        T_I64 => TValue::I64(i64::from_be_bytes(read_n(r)?)),
        T_STRING => {
            let n = read_len(r)?;
            let mut b = vec![0u8; n];
            r.read_exact(&mut b)?;
            TValue::Str(b)
        }
        T_STRUCT => {
            let mut fields = Vec::new();
            loop {
                let t = read_n::<1>(r)?[0];
                if t == 0 {
                    break;
                }
                let id = i16::from_be_bytes(read_n(r)?);
                fields.push((id, decode(t, r, depth + 1)?));
            }
            TValue::Struct(fields)
        }
        T_MAP => {
            let [kt, vt] = read_n::<2>(r)?;
            let n = read_len(r)?;
            let mut entries = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let k = decode(kt, r, depth + 1)?;
                let v = decode(vt, r, depth + 1)?;
                entries.push((k, v));
            }
            TValue::Map(kt, vt, entries)
        }
        T_SET | T_LIST => {
            let et = read_n::<1>(r)?[0];
            let n = read_len(r)?;
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(decode(et, r, depth + 1)?);
            }
            if ttype == T_SET {
                TValue::Set(et, items)
            } else {
                TValue::List(et, items)
            }
        }
        other => return Err(bad(format!("unknown thrift type {other}"))),
    })
}

/// What a call came back with.
#[derive(Debug)]
pub enum Reply {
    /// The result struct: field 0 is the return value, other fields the declared exceptions.
    Result(TValue),
    /// A `TApplicationException` (unknown method, internal error…).
    Application(String),
}

/// Calls `method` with `args` (a struct) on a new connection and reads the reply.
pub fn call(address: &str, timeout: Duration, method: &str, args: &TValue) -> io::Result<Reply> {
    let addr = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address}: no address")))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;

    let mut msg = Vec::with_capacity(256);
    msg.extend_from_slice(&(VERSION_1 | CALL).to_be_bytes());
    TValue::str(method).encode(&mut msg);
    msg.extend_from_slice(&1i32.to_be_bytes());
    args.encode(&mut msg);
    let mut w = BufWriter::new(&stream);
    w.write_all(&msg)?;
    w.flush()?;
    drop(w);

    let mut r = BufReader::new(&stream);
    let header = u32::from_be_bytes(read_n(&mut r)?);
    if header & 0xffff_0000 != VERSION_1 {
        return Err(bad(format!(
            "not a strict Thrift binary reply (header {header:#010x}); is this a Hive Metastore with framed or SASL transport?"
        )));
    }
    let _name = decode(T_STRING, &mut r, 0)?;
    let _seq = i32::from_be_bytes(read_n(&mut r)?);
    let body = decode(T_STRUCT, &mut r, 0)?;
    match header & 0xff {
        REPLY => Ok(Reply::Result(body)),
        EXCEPTION => Ok(Reply::Application(
            body.field(1)
                .and_then(TValue::as_str)
                .unwrap_or("application exception")
                .to_string(),
        )),
        other => Err(bad(format!("unexpected Thrift message type {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        let v = TValue::Struct(vec![
            (1, TValue::Bool(true)),
            (2, TValue::Byte(-3)),
            (3, TValue::Double(1.5)),
            (4, TValue::I16(-2)),
            (5, TValue::I32(70000)),
            (6, TValue::I64(-1 << 40)),
            (7, TValue::str("héllo")),
            (8, TValue::string_map(&[("a", "b")])),
            (9, TValue::Set(T_I32, vec![TValue::I32(1)])),
            (
                10,
                TValue::List(T_STRUCT, vec![TValue::Struct(vec![(1, TValue::str("x"))])]),
            ),
        ]);
        let mut bytes = Vec::new();
        v.encode(&mut bytes);
        let back = TValue::decode(T_STRUCT, &mut bytes.as_slice()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_string_is_length_prefixed_big_endian() {
        let mut bytes = Vec::new();
        TValue::str("ab").encode(&mut bytes);
        assert_eq!(bytes, [0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let bytes = [T_STRING, 0, 1, 0x7f, 0xff, 0xff, 0xff];
        assert!(TValue::decode(T_STRUCT, &mut bytes.as_slice()).is_err());
    }
}
