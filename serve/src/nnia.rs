//! The NNIA array container of the nnInteractive remote protocol
//! (shared/docs/NNINTERACTIVE_PROTOCOL.md §2.3–2.5): a small header, then the array's raw bytes
//! in pieces of at most 2^30 bytes, each one Blosc2 chunk.
//!
//! Why hand-written: no maintained pure-Rust Blosc2 crate fits (`blosc2-sys` builds C-Blosc2
//! with CMake, `blosc2-pure-rs` is 0.2 and untested against this client), and only the chunk
//! framing is needed: the compression itself is the `zstd` crate. The reader takes every form
//! the client produces (§2.4: zstd or memcpyed streams, split or not, byte-shuffle, the special
//! all-zero / constant chunks); the writer emits the recommended form (§2.5: zstd, one stream
//! per block, no filter). Every length is checked against the declared shape before anything
//! is allocated, so a hostile body is a clean error.

/// Element types of the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `bool` (one byte, 0/1).
    Bool,
    /// `uint8`.
    U8,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `uint16`.
    U16,
    /// `int32`.
    I32,
    /// `uint32`.
    U32,
    /// `int64`.
    I64,
    /// `uint64`.
    U64,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
}

impl Dtype {
    /// From numpy's name.
    pub fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "bool" => Dtype::Bool,
            "uint8" => Dtype::U8,
            "int8" => Dtype::I8,
            "int16" => Dtype::I16,
            "uint16" => Dtype::U16,
            "int32" => Dtype::I32,
            "uint32" => Dtype::U32,
            "int64" => Dtype::I64,
            "uint64" => Dtype::U64,
            "float32" => Dtype::F32,
            "float64" => Dtype::F64,
            _ => return None,
        })
    }

    /// numpy's name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::U16 => "uint16",
            Dtype::I32 => "int32",
            Dtype::U32 => "uint32",
            Dtype::I64 => "int64",
            Dtype::U64 => "uint64",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// Bool or integer: what a target buffer may be.
    pub fn is_integer(self) -> bool {
        !matches!(self, Dtype::F32 | Dtype::F64)
    }
}

/// A decoded array: dtype, shape (C order) and raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw bytes, C order, little-endian.
    pub bytes: Vec<u8>,
}

impl Array {
    /// Elements as `f32` (for images).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = &self.bytes;
        macro_rules! conv {
            ($t:ty, $n:expr) => {
                b.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])) as f32)
                    .collect()
            };
        }
        match self.dtype {
            Dtype::Bool | Dtype::U8 => b.iter().map(|&v| f32::from(v)).collect(),
            Dtype::I8 => b.iter().map(|&v| f32::from(v as i8)).collect(),
            Dtype::I16 => conv!(i16, 2),
            Dtype::U16 => conv!(u16, 2),
            Dtype::I32 => conv!(i32, 4),
            Dtype::U32 => conv!(u32, 4),
            Dtype::I64 => conv!(i64, 8),
            Dtype::U64 => conv!(u64, 8),
            Dtype::F32 => conv!(f32, 4),
            Dtype::F64 => conv!(f64, 8),
        }
    }

    /// Elements as "marked" flags (nonzero = marked), for masks.
    pub fn to_marks(&self) -> Vec<bool> {
        self.to_f32().iter().map(|&v| v != 0.0).collect()
    }

    /// A 0/1 mask as an array of `dtype`.
    pub fn from_mask(mask: &[u8], shape: Vec<usize>, dtype: Dtype) -> Array {
        let n = dtype.size();
        let mut bytes = vec![0u8; mask.len() * n];
        for (i, &m) in mask.iter().enumerate() {
            if m != 0 {
                let v: Vec<u8> = match dtype {
                    Dtype::F32 => 1f32.to_le_bytes().to_vec(),
                    Dtype::F64 => 1f64.to_le_bytes().to_vec(),
                    _ => {
                        let mut v = vec![0u8; n];
                        v[0] = 1;
                        v
                    }
                };
                bytes[i * n..(i + 1) * n].copy_from_slice(&v);
            }
        }
        Array {
            dtype,
            shape,
            bytes,
        }
    }
}

/// What is wrong with a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed NNIA array: {0}")]
pub struct NniaError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, NniaError> {
    Err(NniaError(s.into()))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NniaError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return err(format!(
                "body ends at byte {} (needed {n} more)",
                self.b.len()
            ));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, NniaError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, NniaError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64, NniaError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
}

/// Reads only the header: dtype and shape (to refuse a huge declared size before decoding).
///
/// # Errors
/// A header that is cut short or not NNIA.
pub fn peek(body: &[u8]) -> Result<(Dtype, Vec<usize>), NniaError> {
    let mut r = Reader { b: body, at: 0 };
    header(&mut r)
}

fn header(r: &mut Reader<'_>) -> Result<(Dtype, Vec<usize>), NniaError> {
    if r.take(4)? != b"NNIA" {
        return err("bad magic (expected NNIA)");
    }
    let version = r.u8()?;
    if version != 1 {
        return err(format!("container version {version}, expected 1"));
    }
    let codec = r.u8()?;
    if codec != 1 {
        return err(format!("codec {codec}: only 1 (ZSTD) is read"));
    }
    let ndim = usize::from(r.u8()?);
    let l = usize::from(r.u8()?);
    let name = std::str::from_utf8(r.take(l)?).map_err(|_| NniaError("dtype name".into()))?;
    let dtype = Dtype::parse(name).ok_or_else(|| NniaError(format!("dtype `{name}`")))?;
    let mut shape = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let d = r.u64()?;
        shape.push(usize::try_from(d).map_err(|_| NniaError("dimension too large".into()))?);
    }
    Ok((dtype, shape))
}

/// Decodes a body. `max_bytes` bounds the declared raw size (checked before any allocation).
///
/// # Errors
/// Anything not a well-formed NNIA array of the sizes it declares.
pub fn unpack(body: &[u8], max_bytes: usize) -> Result<Array, NniaError> {
    let mut r = Reader { b: body, at: 0 };
    let (dtype, shape) = header(&mut r)?;
    let total = shape
        .iter()
        .try_fold(dtype.size(), |a, &d| a.checked_mul(d))
        .ok_or_else(|| NniaError("declared size overflows".into()))?;
    if total > max_bytes {
        return err(format!(
            "declared size {total} bytes exceeds the server's limit {max_bytes}"
        ));
    }
    if total == 0 {
        return err("zero-element array");
    }
    let nchunks = r.u32()? as usize;
    let mut bytes = Vec::with_capacity(total);
    for k in 0..nchunks {
        let ulen = usize::try_from(r.u64()?).map_err(|_| NniaError("ulen".into()))?;
        let clen = usize::try_from(r.u64()?).map_err(|_| NniaError("clen".into()))?;
        if ulen % dtype.size() != 0 || bytes.len() + ulen > total {
            return err(format!(
                "chunk {k}: {ulen} bytes do not fit the declared array"
            ));
        }
        let chunk = r.take(clen)?;
        let raw =
            decode_chunk(chunk, ulen).map_err(|e| NniaError(format!("chunk {k}: {}", e.0)))?;
        bytes.extend_from_slice(&raw);
    }
    if bytes.len() != total {
        return err(format!(
            "{} bytes of data, the shape needs {total}",
            bytes.len()
        ));
    }
    Ok(Array {
        dtype,
        shape,
        bytes,
    })
}

fn i32_at(c: &[u8], at: usize) -> Result<i32, NniaError> {
    c.get(at..at + 4)
        .map(|s| i32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
        .ok_or_else(|| NniaError(format!("chunk ends before byte {}", at + 4)))
}

/// One Blosc2 chunk of `ulen` raw bytes.
fn decode_chunk(c: &[u8], ulen: usize) -> Result<Vec<u8>, NniaError> {
    if c.len() < 32 {
        return err("shorter than a Blosc2 header");
    }
    let flags = c[2];
    let typesize = usize::from(c[3]).max(1);
    let nbytes = usize::try_from(i32_at(c, 4)?).map_err(|_| NniaError("nbytes".into()))?;
    let blocksize = usize::try_from(i32_at(c, 8)?).map_err(|_| NniaError("blocksize".into()))?;
    if nbytes != ulen {
        return err(format!("header says {nbytes} bytes, the container {ulen}"));
    }
    if flags & 0x05 != 0x05 {
        return err("no extended header");
    }
    let b2 = c[31];
    if b2 & 0x01 != 0 || b2 & 0x08 != 0 {
        return err("dictionary or lazy chunk");
    }
    match (b2 >> 4) & 0x07 {
        0 => {}
        1 | 4 => return Ok(vec![0; nbytes]),
        2 => {
            return err("all-NaN special chunk not supported");
        }
        3 => {
            let v = c
                .get(32..32 + typesize)
                .ok_or_else(|| NniaError("special value".into()))?;
            return Ok(v.iter().copied().cycle().take(nbytes).collect());
        }
        s => return err(format!("special value {s}")),
    }
    let filters = &c[16..22];
    if filters.iter().any(|&f| f > 1) {
        return err("filters other than shuffle");
    }
    if flags & 0x02 != 0 {
        // memcpyed: the raw bytes follow the header.
        return c
            .get(32..32 + nbytes)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| NniaError("memcpyed chunk cut short".into()));
    }
    if flags >> 5 != 4 {
        return err("compressor other than zstd");
    }
    if blocksize == 0 || blocksize > nbytes.max(1) * 2 {
        return err(format!("block size {blocksize}"));
    }
    let nblocks = nbytes.div_ceil(blocksize);
    let mut out = Vec::with_capacity(nbytes);
    for i in 0..nblocks {
        let off =
            usize::try_from(i32_at(c, 32 + 4 * i)?).map_err(|_| NniaError("offset".into()))?;
        let leftover = i + 1 == nblocks && nbytes % blocksize != 0;
        let bsize = if leftover {
            nbytes % blocksize
        } else {
            blocksize
        };
        let nstreams = if flags & 0x10 == 0 && !leftover && bsize % typesize == 0 {
            typesize
        } else {
            1
        };
        let neblock = bsize / nstreams;
        let mut block = Vec::with_capacity(bsize);
        let mut at = off;
        for _ in 0..nstreams {
            let csize = i32_at(c, at)?;
            at += 4;
            if csize == 0 {
                block.resize(block.len() + neblock, 0);
            } else if csize < 0 {
                let token = *c.get(at).ok_or_else(|| NniaError("run token".into()))?;
                at += 1;
                if token & 1 == 0 {
                    return err("bad run token");
                }
                let byte = ((-(i64::from(csize))) & 0xFF) as u8;
                block.resize(block.len() + neblock, byte);
            } else {
                let cs = csize as usize;
                let s = c
                    .get(at..at + cs)
                    .ok_or_else(|| NniaError("stream cut short".into()))?;
                at += cs;
                if cs == neblock {
                    block.extend_from_slice(s);
                } else {
                    let d = zstd::bulk::decompress(s, neblock)
                        .map_err(|e| NniaError(format!("zstd: {e}")))?;
                    if d.len() != neblock {
                        return err("stream inflates to the wrong size");
                    }
                    block.extend_from_slice(&d);
                }
            }
        }
        // Undo the filters in reverse slot order (only byte-shuffle is accepted).
        for &f in filters.iter().rev() {
            if f == 1 {
                block = unshuffle(&block, typesize);
            }
        }
        out.extend_from_slice(&block);
    }
    if out.len() != nbytes {
        return err("blocks do not add up to nbytes");
    }
    Ok(out)
}

fn unshuffle(b: &[u8], ts: usize) -> Vec<u8> {
    let n = b.len() / ts;
    let mut out = b.to_vec();
    for j in 0..ts {
        for i in 0..n {
            out[i * ts + j] = b[j * n + i];
        }
    }
    out
}

/// Encodes an array the way §2.5 recommends: pieces of ≤ 2^30 bytes, each a zstd Blosc2
/// chunk (128 KiB blocks, one stream each, all-zero blocks as a zero length).
pub fn pack(a: &Array) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"NNIA");
    out.extend_from_slice(&[1, 1, a.shape.len() as u8, a.dtype.name().len() as u8]);
    out.extend_from_slice(a.dtype.name().as_bytes());
    for &d in &a.shape {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    let pieces: Vec<&[u8]> = a.bytes.chunks(1 << 30).collect();
    out.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    for p in pieces {
        let c = encode_chunk(p, a.dtype.size());
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&(c.len() as u64).to_le_bytes());
        out.extend_from_slice(&c);
    }
    out
}

fn encode_chunk(raw: &[u8], typesize: usize) -> Vec<u8> {
    let nbytes = raw.len();
    let mut blocksize = (128 * 1024).min(nbytes.max(1));
    blocksize -= blocksize % typesize.max(1);
    let blocksize = blocksize.max(typesize);
    let nblocks = nbytes.div_ceil(blocksize);
    let mut head = vec![0u8; 32];
    head[0] = 5;
    head[1] = 1;
    head[2] = 0x95;
    head[3] = typesize as u8;
    head[4..8].copy_from_slice(&(nbytes as i32).to_le_bytes());
    head[8..12].copy_from_slice(&(blocksize as i32).to_le_bytes());
    head[22] = 5;
    let mut body = Vec::new();
    let mut offsets = Vec::with_capacity(nblocks);
    let data_start = 32 + 4 * nblocks;
    for blk in raw.chunks(blocksize) {
        offsets.push((data_start + body.len()) as i32);
        if blk.iter().all(|&b| b == 0) {
            body.extend_from_slice(&0i32.to_le_bytes());
            continue;
        }
        match zstd::bulk::compress(blk, 3) {
            Ok(z) if z.len() < blk.len() => {
                body.extend_from_slice(&(z.len() as i32).to_le_bytes());
                body.extend_from_slice(&z);
            }
            _ => {
                body.extend_from_slice(&(blk.len() as i32).to_le_bytes());
                body.extend_from_slice(blk);
            }
        }
    }
    let cbytes = data_start + body.len();
    head[12..16].copy_from_slice(&(cbytes as i32).to_le_bytes());
    let mut out = head;
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind_of_block() {
        // All zero, constant, half-empty, random-ish, several blocks with a leftover.
        let n = 3 * 128 * 1024 + 17;
        let mut half = vec![0u8; n];
        half[n / 2..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i * 7 % 251) as u8);
        for bytes in [vec![0u8; n], vec![7u8; n], half] {
            let a = Array {
                dtype: Dtype::U8,
                shape: vec![n],
                bytes,
            };
            assert_eq!(unpack(&pack(&a), usize::MAX).expect("unpack"), a);
        }
        let f: Vec<u8> = (0..1000u32)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        let a = Array {
            dtype: Dtype::F32,
            shape: vec![10, 100],
            bytes: f,
        };
        let b = unpack(&pack(&a), usize::MAX).expect("f32");
        assert_eq!(b.to_f32()[3], 1.5);
    }

    #[test]
    fn refuses_hostile_bodies() {
        let a = Array {
            dtype: Dtype::U8,
            shape: vec![4, 4],
            bytes: vec![1; 16],
        };
        let good = pack(&a);
        for cut in [0, 3, 10, 30, good.len() - 1] {
            assert!(unpack(&good[..cut], usize::MAX).is_err(), "cut at {cut}");
        }
        assert!(unpack(&good, 15).is_err(), "limit");
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(unpack(&bad, usize::MAX).is_err());
        // A header declaring 2^40 elements is refused before any allocation.
        let mut huge = b"NNIA\x01\x01\x01\x05uint8".to_vec();
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        huge.extend_from_slice(&0u32.to_le_bytes());
        assert!(unpack(&huge, 1 << 30).unwrap_err().0.contains("limit"));
        assert!(peek(&huge).is_ok());
    }

    #[test]
    fn unshuffle_inverts_blosc_byte_shuffle() {
        // Two u16 elements [0x0102, 0x0304] little-endian: bytes 02 01 04 03; shuffled:
        // all first bytes then all second bytes: 02 04 01 03.
        assert_eq!(unshuffle(&[2, 4, 1, 3], 2), vec![2, 1, 4, 3]);
    }
}
