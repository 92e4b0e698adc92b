//! PostgreSQL's binary `COPY … TO STDOUT` format, read as it streams in: the way to walk the
//! whole audit log on PostgreSQL at the speed the server sends it, one statement and one
//! snapshot, instead of a page of rows per round trip through the `Any` pool (which cannot
//! `COPY`).
//!
//! The layout (PostgreSQL's documentation, "COPY", "Binary Format"): an 11-byte signature,
//! a 32-bit flags field, a 32-bit header-extension length and that many bytes; then per tuple a
//! 16-bit field count and per field a 32-bit length (`-1`: NULL) and that many bytes; then a
//! 16-bit `-1`. Every integer is big-endian. A `BIGINT` field is its 8 bytes, a `TEXT` field its
//! UTF-8 bytes.

use super::DbError;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Flags bit 16: each tuple carries an OID first (never asked for here); bits 0–15 are the
/// format's critical flags, which a reader must refuse when it does not know them (it knows none).
const REFUSED_FLAGS: u32 = (1 << 16) | 0xffff;

/// Tuples of `N` fields, parsed from the stream's messages in order (a message may end
/// anywhere, even inside a field).
pub struct BinaryCopy<const N: usize> {
    pending: Vec<u8>,
    header_read: bool,
    ended: bool,
}

impl<const N: usize> Default for BinaryCopy<N> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            header_read: false,
            ended: false,
        }
    }
}

/// What the bytes at hand hold next.
enum Next<'a, const N: usize> {
    Tuple([Option<&'a [u8]>; N], usize),
    End(usize),
    /// Not all of it has arrived yet.
    Partial,
}

impl<const N: usize> BinaryCopy<N> {
    /// Parses `bytes`, the stream's next message, calling `tuple` with each whole tuple's fields.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        tuple: &mut impl FnMut([Option<&[u8]>; N]) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        if self.ended {
            return Err(corrupt("bytes after the COPY stream's end"));
        }
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        if !self.header_read {
            match header(&self.pending)? {
                Some(len) => {
                    at = len;
                    self.header_read = true;
                }
                None => return Ok(()),
            }
        }
        loop {
            match next::<N>(&self.pending[at..])? {
                Next::Tuple(fields, len) => {
                    tuple(fields)?;
                    at += len;
                }
                Next::End(len) => {
                    at += len;
                    self.ended = true;
                    break;
                }
                Next::Partial => break,
            }
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// Checks the stream ended where the format says it does (its trailer, nothing after).
    pub fn finish(self) -> Result<(), DbError> {
        if self.ended && self.pending.is_empty() {
            Ok(())
        } else {
            Err(corrupt("the COPY stream stopped before its end"))
        }
    }
}

/// The header's length, once all of it is at hand.
fn header(bytes: &[u8]) -> Result<Option<usize>, DbError> {
    if bytes.len() < 19 {
        return Ok(None);
    }
    if &bytes[..11] != SIGNATURE {
        return Err(corrupt("not PostgreSQL's binary COPY format"));
    }
    if be_u32(&bytes[11..15]) & REFUSED_FLAGS != 0 {
        return Err(corrupt("a COPY stream with OIDs or unknown critical flags"));
    }
    let len = 19 + be_u32(&bytes[15..19]) as usize;
    Ok((bytes.len() >= len).then_some(len))
}

fn next<const N: usize>(bytes: &[u8]) -> Result<Next<'_, N>, DbError> {
    let Some(count) = bytes.get(..2) else {
        return Ok(Next::Partial);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Next::End(2));
    }
    if count as usize != N {
        return Err(corrupt("a COPY tuple with the wrong number of fields"));
    }
    let mut fields = [None; N];
    let mut at = 2;
    for field in &mut fields {
        let Some(len) = bytes.get(at..at + 4) else {
            return Ok(Next::Partial);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len == -1 {
            continue;
        }
        let len = usize::try_from(len).map_err(|_| corrupt("a negative COPY field length"))?;
        let Some(value) = bytes.get(at..at + len) else {
            return Ok(Next::Partial);
        };
        *field = Some(value);
        at += len;
    }
    Ok(Next::Tuple(fields, at))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A `BIGINT` field.
pub fn bigint(field: Option<&[u8]>) -> Result<i64, DbError> {
    field
        .and_then(|f| <[u8; 8]>::try_from(f).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| corrupt("a BIGINT field that is not 8 bytes"))
}

fn corrupt(what: &str) -> DbError {
    DbError::Corrupt(format!("reading the audit log: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of two tuples `(BIGINT, TEXT)`, the second's text NULL.
    fn stream() -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend(0u32.to_be_bytes());
        s.extend(3u32.to_be_bytes());
        s.extend(b"ext");
        for (n, text) in [(7i64, Some(&b"bay"[..])), (-2, None)] {
            s.extend(2i16.to_be_bytes());
            s.extend(8i32.to_be_bytes());
            s.extend(n.to_be_bytes());
            match text {
                Some(t) => {
                    s.extend((t.len() as i32).to_be_bytes());
                    s.extend(t);
                }
                None => s.extend((-1i32).to_be_bytes()),
            }
        }
        s.extend((-1i16).to_be_bytes());
        s
    }

    /// A tuple of the test stream.
    type Tuple = (i64, Option<Vec<u8>>);

    fn parse(messages: &[&[u8]]) -> Result<Vec<Tuple>, DbError> {
        let mut copy = BinaryCopy::<2>::default();
        let mut out = Vec::new();
        for m in messages {
            copy.feed(m, &mut |[n, t]| {
                out.push((bigint(n)?, t.map(<[u8]>::to_vec)));
                Ok(())
            })?;
        }
        copy.finish()?;
        Ok(out)
    }

    #[test]
    fn tuples_come_out_whole_wherever_the_messages_split() {
        let s = stream();
        let want = vec![(7, Some(b"bay".to_vec())), (-2, None)];
        assert_eq!(parse(&[&s]).unwrap(), want);
        for cut in 1..s.len() {
            assert_eq!(
                parse(&[&s[..cut], &s[cut..]]).unwrap(),
                want,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_stream_cut_short_or_run_on_or_of_another_shape_is_refused() {
        let s = stream();
        assert!(parse(&[&s[..s.len() - 1]]).is_err());
        let mut longer = s.clone();
        longer.push(0);
        assert!(parse(&[&longer]).is_err());
        let mut other = s.clone();
        other[0] = b'X';
        assert!(parse(&[&other]).is_err());
        let mut three_fields = s.clone();
        three_fields[22] = 3;
        assert!(parse(&[&three_fields]).is_err());
    }
}
