//! The RESP wire format, both ways: commands in (arrays of bulk strings, as every client sends
//! them) and replies out, in RESP2 or RESP3 as the connection chose with `HELLO`.

/// A reply before it is encoded for one protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(&'static str),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// A missing value: `$-1` in RESP2.
    Nil,
    /// A missing array (a blocking read that timed out, a deleted entry): `*-1` in RESP2.
    NilArray,
    Array(Vec<Reply>),
    /// A map in RESP3; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    pub fn bulk(s: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(s.as_ref().to_vec())
    }

    pub fn err(s: impl Into<String>) -> Reply {
        Reply::Error(s.into())
    }

    /// Appends the encoding for protocol `proto` (2 or 3).
    pub fn encode(&self, proto: u8, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => push_line(out, b'+', s.as_bytes()),
            Reply::Error(s) => push_line(out, b'-', s.as_bytes()),
            Reply::Int(n) => push_line(out, b':', n.to_string().as_bytes()),
            Reply::Bulk(b) => {
                push_line(out, b'$', b.len().to_string().as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil if proto >= 3 => out.extend_from_slice(b"_\r\n"),
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::NilArray if proto >= 3 => out.extend_from_slice(b"_\r\n"),
            Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                push_line(out, b'*', items.len().to_string().as_bytes());
                items.iter().for_each(|i| i.encode(proto, out));
            }
            Reply::Map(pairs) => {
                if proto >= 3 {
                    push_line(out, b'%', pairs.len().to_string().as_bytes());
                } else {
                    push_line(out, b'*', (pairs.len() * 2).to_string().as_bytes());
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
        }
    }
}

fn push_line(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

/// Why the bytes a client sent are not a command.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

/// The longest argument list and argument this server accepts.
const MAX_ARGS: usize = 1 << 20;
const MAX_BULK: usize = 512 << 20;

/// Takes one command off the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_command(buf: &mut Vec<u8>) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
    let mut at = 0;
    let Some(header) = line(buf, &mut at)? else { return Ok(None) };
    let Some((&b'*', count)) = header.split_first() else {
        return Err(ProtocolError("expected '*'"));
    };
    let count = number(count).filter(|n| *n <= MAX_ARGS).ok_or(ProtocolError("invalid multibulk length"))?;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let Some(header) = line(buf, &mut at)? else { return Ok(None) };
        let Some((&b'$', len)) = header.split_first() else {
            return Err(ProtocolError("expected '$'"));
        };
        let len = number(len).filter(|n| *n <= MAX_BULK).ok_or(ProtocolError("invalid bulk length"))?;
        if buf.len() < at + len + 2 {
            return Ok(None);
        }
        if &buf[at + len..at + len + 2] != b"\r\n" {
            return Err(ProtocolError("bulk not terminated"));
        }
        args.push(buf[at..at + len].to_vec());
        at += len + 2;
    }
    buf.drain(..at);
    Ok(Some(args))
}

/// The line starting at `*at` without its CRLF; advances past it.
fn line<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let rest = &buf[*at..];
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        return if rest.len() > 64 { Err(ProtocolError("header too long")) } else { Ok(None) };
    };
    *at += end + 2;
    Ok(Some(&rest[..end]))
}

fn number(digits: &[u8]) -> Option<usize> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_split_anywhere_parses_once_whole() {
        let wire = b"*3\r\n$4\r\nXADD\r\n$1\r\nk\r\n$2\r\nab\r\n*1\r\n$4\r\nPING\r\n".to_vec();
        for cut in 0..wire.len() {
            let mut buf = wire[..cut].to_vec();
            let first = parse_command(&mut buf).unwrap();
            if cut < 29 {
                assert_eq!(first, None, "cut at {cut}");
                continue;
            }
            assert_eq!(first, Some(vec![b"XADD".to_vec(), b"k".to_vec(), b"ab".to_vec()]));
        }
        let mut buf = wire.clone();
        parse_command(&mut buf).unwrap();
        assert_eq!(parse_command(&mut buf).unwrap(), Some(vec![b"PING".to_vec()]));
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(parse_command(&mut b"HELLO\r\n".to_vec()).is_err());
        assert!(parse_command(&mut b"*1\r\n$x\r\n".to_vec()).is_err());
        assert!(parse_command(&mut b"*1\r\n$1\r\nab\r\n".to_vec()).is_err());
    }

    #[test]
    fn maps_flatten_in_resp2() {
        let map = Reply::Map(vec![(Reply::bulk("k"), Reply::Int(1))]);
        let (mut two, mut three) = (Vec::new(), Vec::new());
        map.encode(2, &mut two);
        map.encode(3, &mut three);
        assert_eq!(two, b"*2\r\n$1\r\nk\r\n:1\r\n");
        assert_eq!(three, b"%1\r\n$1\r\nk\r\n:1\r\n");
    }
}
