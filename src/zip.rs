//! A ZIP archive of stored (uncompressed) entries, written as a stream and read back whole: the
//! citizen's export. Scans are PDF, JPEG, PNG or TIFF, compressed already, so nothing is gained
//! by deflating them, and a stored entry is simple enough to check against the specification
//! (PKWARE APPNOTE 6.3.10, sections 4.3 and 4.4) field by field.
//!
//! Each entry is written as: local file header (signature `PK\3\4`, flags bit 3 "sizes follow
//! the data" and bit 11 "the name is UTF-8", method 0, CRC and sizes zero), the name, the data,
//! then a data descriptor (`PK\7\8`, CRC-32, compressed size, size). The archive ends with the
//! central directory (one `PK\1\2` record per entry, with its CRC, sizes and the offset of its
//! local header) and the end-of-central-directory record (`PK\5\6`). No ZIP64: an archive over
//! 4 GiB or 65,535 entries is refused, as is any name that is not a plain relative path.

use bytes::{BufMut, Bytes, BytesMut};

const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
/// Version 2.0: the oldest that knows data descriptors.
const VERSION: u16 = 20;
/// Bit 3: CRC and sizes in the data descriptor; bit 11: UTF-8 names.
const FLAGS: u16 = (1 << 3) | (1 << 11);
/// 1980-01-01 00:00 in MS-DOS form: the time of an entry says nothing (the manifest does).
const DOS_DATE: u16 = (1 << 5) | 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("the archive would pass 4 GiB or 65,535 entries")]
    TooLarge,
    #[error("{0:?} is not a plain relative name")]
    BadName(String),
    #[error("not a ZIP archive hoso wrote: {0}")]
    Malformed(String),
}

struct Written {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
}

/// Writes an archive as a sequence of byte chunks: call [`Writer::begin`], send the data in
/// pieces through [`Writer::data`], [`Writer::end_entry`], and so on; [`Writer::finish`] last.
#[derive(Default)]
pub struct Writer {
    offset: u64,
    entries: Vec<Written>,
    open: Option<Open>,
}

struct Open {
    name: String,
    offset: u64,
    crc: crc32fast::Hasher,
    size: u64,
}

fn check_name(name: &str) -> Result<(), ZipError> {
    let plain = !name.is_empty()
        && name.len() < 256
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !name.contains('\\');
    if plain {
        Ok(())
    } else {
        Err(ZipError::BadName(name.to_owned()))
    }
}

impl Writer {
    /// The local header of a new entry named `name`.
    pub fn begin(&mut self, name: &str) -> Result<Bytes, ZipError> {
        check_name(name)?;
        if self.entries.len() >= 65_535 {
            return Err(ZipError::TooLarge);
        }
        let mut b = BytesMut::with_capacity(30 + name.len());
        b.put_u32_le(LOCAL);
        b.put_u16_le(VERSION);
        b.put_u16_le(FLAGS);
        b.put_u16_le(0); // stored
        b.put_u16_le(0); // time
        b.put_u16_le(DOS_DATE);
        b.put_u32_le(0); // CRC, in the descriptor
        b.put_u32_le(0); // compressed size, in the descriptor
        b.put_u32_le(0); // size, in the descriptor
        b.put_u16_le(name.len() as u16);
        b.put_u16_le(0); // no extra field
        b.put_slice(name.as_bytes());
        self.open = Some(Open {
            name: name.to_owned(),
            offset: self.offset,
            crc: crc32fast::Hasher::new(),
            size: 0,
        });
        self.offset += b.len() as u64;
        Ok(b.freeze())
    }

    /// Counts a piece of the open entry's data (the caller sends it as it is).
    pub fn data(&mut self, piece: &[u8]) -> Result<(), ZipError> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| ZipError::Malformed("data outside an entry".into()))?;
        open.crc.update(piece);
        open.size += piece.len() as u64;
        self.offset += piece.len() as u64;
        if self.offset > u64::from(u32::MAX) {
            return Err(ZipError::TooLarge);
        }
        Ok(())
    }

    /// The open entry's data descriptor.
    pub fn end_entry(&mut self) -> Result<Bytes, ZipError> {
        let open = self
            .open
            .take()
            .ok_or_else(|| ZipError::Malformed("no entry to end".into()))?;
        let crc = open.crc.finalize();
        let size = u32::try_from(open.size).map_err(|_| ZipError::TooLarge)?;
        let mut b = BytesMut::with_capacity(16);
        b.put_u32_le(DESCRIPTOR);
        b.put_u32_le(crc);
        b.put_u32_le(size);
        b.put_u32_le(size);
        self.offset += 16;
        self.entries.push(Written {
            name: open.name,
            crc,
            size,
            offset: u32::try_from(open.offset).map_err(|_| ZipError::TooLarge)?,
        });
        Ok(b.freeze())
    }

    /// The central directory and its end record.
    pub fn finish(self) -> Result<Bytes, ZipError> {
        let start = u32::try_from(self.offset).map_err(|_| ZipError::TooLarge)?;
        let mut b = BytesMut::new();
        for e in &self.entries {
            b.put_u32_le(CENTRAL);
            b.put_u16_le(VERSION); // made by
            b.put_u16_le(VERSION); // needed
            b.put_u16_le(FLAGS);
            b.put_u16_le(0);
            b.put_u16_le(0);
            b.put_u16_le(DOS_DATE);
            b.put_u32_le(e.crc);
            b.put_u32_le(e.size);
            b.put_u32_le(e.size);
            b.put_u16_le(e.name.len() as u16);
            b.put_u16_le(0); // extra
            b.put_u16_le(0); // comment
            b.put_u16_le(0); // disk
            b.put_u16_le(0); // internal attributes
            b.put_u32_le(0); // external attributes
            b.put_u32_le(e.offset);
            b.put_slice(e.name.as_bytes());
        }
        let size = u32::try_from(b.len()).map_err(|_| ZipError::TooLarge)?;
        b.put_u32_le(END);
        b.put_u16_le(0);
        b.put_u16_le(0);
        b.put_u16_le(self.entries.len() as u16);
        b.put_u16_le(self.entries.len() as u16);
        b.put_u32_le(size);
        b.put_u32_le(start);
        b.put_u16_le(0); // comment
        Ok(b.freeze())
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, ZipError> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| ZipError::Malformed("cut short".into()))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, ZipError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| ZipError::Malformed("cut short".into()))
}

/// Every entry of an archive of stored entries, in order, each checked against its CRC-32. The
/// archive must be laid out exactly as [`Writer`] lays it out: entries back to back from the
/// first byte, each name once and the same in its local header and the directory, the central
/// directory right after the last entry and the end record right after it, nothing else. So
/// nothing can hide in it that one reader shows and another does not.
pub fn read(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ZipError> {
    let bad = |what: &str| ZipError::Malformed(what.to_owned());
    let end = bytes
        .len()
        .checked_sub(22)
        .filter(|&at| u32_at(bytes, at) == Ok(END))
        .ok_or_else(|| bad("no end record where it belongs"))?;
    let count = usize::from(u16_at(bytes, end + 10)?);
    let directory_size = u32_at(bytes, end + 12)? as usize;
    let mut at = u32_at(bytes, end + 16)? as usize;
    if at.checked_add(directory_size) != Some(end) {
        return Err(bad(
            "the central directory is not right before the end record",
        ));
    }
    let mut next_local = 0usize;
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(bytes, at)? != CENTRAL || u16_at(bytes, at + 10)? != 0 {
            return Err(bad("a directory record that is not a stored entry"));
        }
        let crc = u32_at(bytes, at + 16)?;
        let size = u32_at(bytes, at + 24)? as usize;
        let name_len = usize::from(u16_at(bytes, at + 28)?);
        let extra = usize::from(u16_at(bytes, at + 30)?) + usize::from(u16_at(bytes, at + 32)?);
        let local = u32_at(bytes, at + 42)? as usize;
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(|| bad("a name that is not UTF-8"))?
            .to_owned();
        check_name(&name)?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ZipError::Malformed(format!(
                "{name} is in the archive twice"
            )));
        }
        let (data, next) = local_entry(bytes, local, next_local, &name, size, crc)?;
        next_local = next;
        out.push((name, data.to_vec()));
        at += 46 + name_len + extra;
    }
    if next_local != u32_at(bytes, end + 16)? as usize || at != end {
        return Err(bad("bytes outside the entries the directory lists"));
    }
    Ok(out)
}

/// The data of the entry whose local header is at `local`, which must be `expected` (right
/// after the previous entry), named `name` as in the directory, with its CRC and size in the
/// local header or (flag bit 3, as [`Writer`] writes) in a data descriptor after the data; and
/// where the next entry must start.
fn local_entry<'b>(
    bytes: &'b [u8],
    local: usize,
    expected: usize,
    name: &str,
    size: usize,
    crc: u32,
) -> Result<(&'b [u8], usize), ZipError> {
    let bad = |what: &str| ZipError::Malformed(format!("{name}: {what}"));
    if local != expected || u32_at(bytes, local)? != LOCAL || u16_at(bytes, local + 8)? != 0 {
        return Err(bad("not a stored entry right after the previous one"));
    }
    let name_len = usize::from(u16_at(bytes, local + 26)?);
    if u16_at(bytes, local + 28)? != 0
        || bytes.get(local + 30..local + 30 + name_len) != Some(name.as_bytes())
    {
        return Err(bad("its local header names another entry"));
    }
    let data_at = local + 30 + name_len;
    let data = bytes
        .get(data_at..data_at + size)
        .ok_or_else(|| bad("cut short"))?;
    if crc32fast::hash(data) != crc {
        return Err(bad("its CRC-32 does not match"));
    }
    let (facts_at, next) = if u16_at(bytes, local + 6)? & (1 << 3) != 0 {
        let descriptor = data_at + size;
        if u32_at(bytes, descriptor)? != DESCRIPTOR {
            return Err(bad("its data descriptor is missing"));
        }
        (descriptor + 4, descriptor + 16)
    } else {
        (local + 14, data_at + size)
    };
    if u32_at(bytes, facts_at)? != crc
        || u32_at(bytes, facts_at + 4)? as usize != size
        || u32_at(bytes, facts_at + 8)? as usize != size
    {
        return Err(bad("its CRC or size differs from the directory's"));
    }
    Ok((data, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = Writer::default();
        let mut out = Vec::new();
        for (name, data) in files {
            out.extend_from_slice(&w.begin(name).unwrap());
            for piece in data.chunks(7) {
                w.data(piece).unwrap();
                out.extend_from_slice(piece);
            }
            out.extend_from_slice(&w.end_entry().unwrap());
        }
        out.extend_from_slice(&w.finish().unwrap());
        out
    }

    #[test]
    fn an_archive_reads_back_and_a_flipped_byte_is_found() {
        let files: &[(&str, &[u8])] = &[
            ("manifest.json", b"{\"a\": 1}"),
            ("scans/tài-liệu.pdf", b"%PDF-1.7 a scan"),
            ("empty", b""),
        ];
        let mut bytes = archive(files);
        let back = read(&bytes).unwrap();
        assert_eq!(back.len(), 3);
        for ((name, data), (n, d)) in files.iter().zip(&back) {
            assert_eq!((*name, *data), (n.as_str(), d.as_slice()));
        }
        // "a scan" is in the second entry's data.
        let at = bytes.windows(6).position(|w| w == b"a scan").unwrap();
        bytes[at] ^= 1;
        assert!(matches!(read(&bytes), Err(ZipError::Malformed(m)) if m.contains("CRC")));
    }

    #[test]
    fn an_archive_with_anything_hidden_or_doubled_is_refused() {
        let good = archive(&[("a.json", b"1"), ("b.json", b"2")]);
        assert!(read(&good).is_ok());
        // Bytes before the first entry.
        let mut prefixed = b"junk".to_vec();
        prefixed.extend_from_slice(&good);
        assert!(read(&prefixed).is_err());
        // The same name twice.
        assert!(
            matches!(read(&archive(&[("a", b"1"), ("a", b"2")])), Err(ZipError::Malformed(m)) if m.contains("twice"))
        );
        // A local header renamed: the directory says b.json, the entry says c.json.
        let mut renamed = good.clone();
        let at = renamed.windows(6).position(|w| w == b"b.json").unwrap();
        renamed[at] = b'c';
        assert!(read(&renamed).is_err());
    }

    #[test]
    fn names_that_climb_out_are_refused() {
        for name in ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", ""] {
            assert!(Writer::default().begin(name).is_err(), "{name:?}");
        }
    }
}
