//! Data frames: what travels on a channel stream between two operators.
//!
//! Wire format, repeated until the stream ends:
//!
//! ```text
//! frame := len:u32 (little-endian) archive[len]     archive = rkyv(Frame)
//! ```
//!
//! Decoding validates the archive with bytecheck, so bytes from the network
//! never panic and never reach the runtime unchecked. A mutated batch payload
//! still decodes (its bytes are opaque here); the runtime validates batches,
//! and QUIC's AEAD already rejects bytes changed in flight.

use rkyv::rancor;
use rkyv::ser::{Positional, Writer};
/// The aligned buffer [`decode`] reuses; re-exported for callers.
pub use rkyv::util::AlignedVec;

/// Longest archive one frame may carry. Batches are far smaller (a batch is
/// cut at a record count); this bound stops a bad length from making a reader
/// allocate gigabytes.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// Bytes of the length prefix before each archive.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Room the archive needs beyond a batch's bytes (enum tag, vec header and
/// alignment padding); used to refuse over-long batches before copying them.
const ARCHIVE_OVERHEAD_BYTES_MAX: usize = 64;

/// One message on a data channel.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum Frame {
    /// An encoded record batch (`weir_core::Batch` bytes), opaque here.
    Batch(Vec<u8>),
    /// Event time has advanced to this timestamp on this channel.
    Watermark(i64),
    /// The channel has no data for now and should not hold back watermarks.
    Idle,
    /// A checkpoint barrier.
    Barrier { id: u64, savepoint: bool },
    /// The sender is done; nothing follows on this channel.
    End,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {bytes} bytes is longer than the maximum of {max_bytes} bytes")]
    TooLong { bytes: usize, max_bytes: usize },
    #[error("frame truncated: expected {expected_bytes} bytes, got {got_bytes}")]
    Truncated {
        expected_bytes: usize,
        got_bytes: usize,
    },
    #[error("frame is not a valid archive: {0}")]
    Invalid(String),
}

/// Appends `frame` to `out` as length prefix + archive.
///
/// The batch bytes are copied once, straight into `out` (no intermediate
/// buffer): the archive is written through a writer whose positions start at
/// the archive, so its alignment is relative to the archive and the reader
/// can decode it from any aligned copy. On error `out` is left unchanged.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    if let Frame::Batch(bytes) = frame {
        let bytes = bytes.len().saturating_add(ARCHIVE_OVERHEAD_BYTES_MAX);
        if bytes > FRAME_BYTES_MAX {
            return Err(FrameError::TooLong {
                bytes,
                max_bytes: FRAME_BYTES_MAX,
            });
        }
    }
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX_BYTES]);
    let base = out.len();
    let written =
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(frame, ArchiveWriter { out, base });
    if let Err(error) = written {
        out.truncate(start);
        return Err(FrameError::Invalid(error.to_string()));
    }
    let len = out.len() - base;
    if len > FRAME_BYTES_MAX {
        out.truncate(start);
        return Err(FrameError::TooLong {
            bytes: len,
            max_bytes: FRAME_BYTES_MAX,
        });
    }
    // `len <= FRAME_BYTES_MAX < u32::MAX`, so the cast is exact.
    out[start..base].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// A `Frame::Batch` encoded around its bytes instead of through a copy:
/// send `prefix`, then the batch bytes themselves, then `tail`.
#[derive(Debug)]
pub struct BatchParts {
    pub prefix: [u8; FRAME_PREFIX_BYTES],
    pub bytes: Vec<u8>,
    pub tail: Vec<u8>,
}

/// Splits the encoding of `Frame::Batch(bytes)` so the batch bytes need not
/// be copied: rkyv lays out a `Vec<u8>`'s contents first, at offset 0 of the
/// archive, and the enum after them. The writer below skips exactly those
/// bytes (it checks their address, so any other layout is noticed); if the
/// layout is ever different, this returns `Ok(Err(bytes))` and the caller
/// encodes normally.
pub fn encode_batch_parts(bytes: Vec<u8>) -> Result<Result<BatchParts, Vec<u8>>, FrameError> {
    let archive_bytes_min = bytes.len().saturating_add(ARCHIVE_OVERHEAD_BYTES_MAX);
    if archive_bytes_min > FRAME_BYTES_MAX {
        return Err(FrameError::TooLong {
            bytes: archive_bytes_min,
            max_bytes: FRAME_BYTES_MAX,
        });
    }
    let frame = Frame::Batch(bytes);
    let Frame::Batch(batch) = &frame else {
        unreachable!("constructed as a batch just above")
    };
    let writer = SkippingWriter {
        skip: batch.as_ptr(),
        skip_len: batch.len(),
        pos: 0,
        tail: Vec::with_capacity(ARCHIVE_OVERHEAD_BYTES_MAX),
        skipped: batch.is_empty(),
        unexpected: false,
    };
    let written = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&frame, writer)
        .map_err(|error| FrameError::Invalid(error.to_string()))?;
    let Frame::Batch(bytes) = frame else {
        unreachable!("constructed as a batch just above")
    };
    if !written.skipped || written.unexpected {
        return Ok(Err(bytes));
    }
    let len = written.pos;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLong {
            bytes: len,
            max_bytes: FRAME_BYTES_MAX,
        });
    }
    Ok(Ok(BatchParts {
        prefix: (len as u32).to_le_bytes(),
        bytes,
        tail: written.tail,
    }))
}

/// Reads a length prefix and checks it against [`FRAME_BYTES_MAX`].
pub fn archive_len(prefix: [u8; FRAME_PREFIX_BYTES]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLong {
            bytes: len,
            max_bytes: FRAME_BYTES_MAX,
        });
    }
    Ok(len)
}

/// Decodes the one length-prefixed frame at the start of `bytes`; returns it
/// and how many bytes it took. `scratch` is reused for alignment.
pub fn decode(bytes: &[u8], scratch: &mut AlignedVec) -> Result<(Frame, usize), FrameError> {
    let Some(prefix) = bytes.first_chunk::<FRAME_PREFIX_BYTES>() else {
        return Err(FrameError::Truncated {
            expected_bytes: FRAME_PREFIX_BYTES,
            got_bytes: bytes.len(),
        });
    };
    let len = archive_len(*prefix)?;
    let end = FRAME_PREFIX_BYTES + len;
    let Some(archive) = bytes.get(FRAME_PREFIX_BYTES..end) else {
        return Err(FrameError::Truncated {
            expected_bytes: end,
            got_bytes: bytes.len(),
        });
    };
    Ok((decode_archive(archive, scratch)?, end))
}

/// Validates and deserializes one archive (without its length prefix).
///
/// rkyv needs the archive aligned; bytes off the network sit at arbitrary
/// offsets, so they are copied into `scratch` unless already aligned.
pub fn decode_archive(archive: &[u8], scratch: &mut AlignedVec) -> Result<Frame, FrameError> {
    if archive.len() > FRAME_BYTES_MAX {
        return Err(FrameError::TooLong {
            bytes: archive.len(),
            max_bytes: FRAME_BYTES_MAX,
        });
    }
    let aligned: &[u8] = if (archive.as_ptr() as usize).is_multiple_of(AlignedVec::<16>::ALIGNMENT)
    {
        archive
    } else {
        scratch.clear();
        scratch.extend_from_slice(archive);
        scratch
    };
    let archived = rkyv::access::<ArchivedFrame, rancor::Error>(aligned)
        .map_err(|error| FrameError::Invalid(error.to_string()))?;
    Ok(match archived {
        ArchivedFrame::Batch(bytes) => Frame::Batch(bytes.as_slice().to_vec()),
        ArchivedFrame::Watermark(at) => Frame::Watermark(at.to_native()),
        ArchivedFrame::Idle => Frame::Idle,
        ArchivedFrame::Barrier { id, savepoint } => Frame::Barrier {
            id: id.to_native(),
            savepoint: *savepoint,
        },
        ArchivedFrame::End => Frame::End,
    })
}

/// Decodes an archive that sits alone in its own allocation. A batch then
/// needs no copy: its bytes are the archive's first bytes, so the allocation
/// is cut to them and becomes the `Frame::Batch` vector.
pub fn decode_archive_owned(
    mut archive: Vec<u8>,
    scratch: &mut AlignedVec,
) -> Result<Frame, FrameError> {
    let aligned = (archive.as_ptr() as usize).is_multiple_of(AlignedVec::<16>::ALIGNMENT);
    if aligned && archive.len() <= FRAME_BYTES_MAX {
        let archived = rkyv::access::<ArchivedFrame, rancor::Error>(&archive)
            .map_err(|error| FrameError::Invalid(error.to_string()))?;
        if let ArchivedFrame::Batch(bytes) = archived
            && std::ptr::eq(bytes.as_ptr(), archive.as_ptr())
        {
            let len = bytes.len();
            archive.truncate(len);
            return Ok(Frame::Batch(archive));
        }
    }
    decode_archive(&archive, scratch)
}

/// Appends to a `Vec` while reporting positions relative to `base`, so an
/// archive written after a length prefix is laid out as if it stood alone.
struct ArchiveWriter<'a> {
    out: &'a mut Vec<u8>,
    base: usize,
}

impl Positional for ArchiveWriter<'_> {
    fn pos(&self) -> usize {
        self.out.len() - self.base
    }
}

impl<E> Writer<E> for ArchiveWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Counts positions like a writer but keeps only what follows the batch
/// bytes, which are recognised by address.
struct SkippingWriter {
    skip: *const u8,
    skip_len: usize,
    pos: usize,
    tail: Vec<u8>,
    skipped: bool,
    unexpected: bool,
}

impl Positional for SkippingWriter {
    fn pos(&self) -> usize {
        self.pos
    }
}

impl<E> Writer<E> for SkippingWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        if bytes.is_empty() {
            // Zero padding, e.g. aligning position 0 for the `u8` contents.
            return Ok(());
        }
        if !self.skipped
            && self.pos == 0
            && bytes.as_ptr() == self.skip
            && bytes.len() == self.skip_len
        {
            self.skipped = true;
        } else if !self.skipped {
            // Something came before the batch bytes: not the layout assumed.
            self.unexpected = true;
        } else {
            self.tail.extend_from_slice(bytes);
        }
        self.pos += bytes.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Batch(Vec::new()),
            Frame::Batch(vec![1, 2, 3]),
            Frame::Batch((0..100_000u32).map(|i| i as u8).collect()),
            Frame::Watermark(i64::MIN),
            Frame::Watermark(-1),
            Frame::Watermark(1_700_000_000_000),
            Frame::Idle,
            Frame::Barrier {
                id: 7,
                savepoint: false,
            },
            Frame::Barrier {
                id: u64::MAX,
                savepoint: true,
            },
            Frame::End,
        ]
    }

    #[test]
    fn every_variant_round_trips_at_every_offset() {
        let mut scratch = AlignedVec::new();
        for frame in all_frames() {
            // Different prefix lengths put the archive at every alignment.
            for pad in 0..17 {
                let mut out = vec![0xAA; pad];
                encode(&frame, &mut out).unwrap();
                let (decoded, used) = decode(&out[pad..], &mut scratch).unwrap();
                assert_eq!(decoded, frame);
                assert_eq!(used, out.len() - pad);
            }
        }
    }

    #[test]
    fn batch_parts_equal_the_plain_encoding() {
        for len in [0, 1, 3, 16, 17, 1000, 118_788] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
            let mut plain = Vec::new();
            encode(&Frame::Batch(bytes.clone()), &mut plain).unwrap();
            let parts = match encode_batch_parts(bytes.clone()).unwrap() {
                Ok(parts) => parts,
                // Tiny batches may be laid out otherwise; callers fall back.
                Err(_) => panic!("no zero-copy layout for {len} bytes"),
            };
            let mut joined = parts.prefix.to_vec();
            joined.extend_from_slice(&parts.bytes);
            joined.extend_from_slice(&parts.tail);
            assert_eq!(joined, plain, "batch of {len} bytes");
        }
    }

    #[test]
    fn owned_decode_reuses_the_batch_allocation() {
        let mut scratch = AlignedVec::new();
        for frame in all_frames() {
            let mut out = Vec::new();
            encode(&frame, &mut out).unwrap();
            let archive = out[FRAME_PREFIX_BYTES..].to_vec();
            let base = archive.as_ptr();
            let decoded = decode_archive_owned(archive, &mut scratch).unwrap();
            if let Frame::Batch(bytes) = &decoded
                && !bytes.is_empty()
                && (base as usize).is_multiple_of(16)
            {
                assert_eq!(bytes.as_ptr(), base, "batch bytes were copied");
            }
            assert_eq!(decoded, frame);
        }
        // Garbage through the owned path is an error too.
        assert!(decode_archive_owned(vec![0xFF; 64], &mut scratch).is_err());
    }

    #[test]
    fn consecutive_frames_decode_in_order() {
        let mut out = Vec::new();
        for frame in all_frames() {
            encode(&frame, &mut out).unwrap();
        }
        let mut scratch = AlignedVec::new();
        let mut at = 0;
        let mut decoded = Vec::new();
        while at < out.len() {
            let (frame, used) = decode(&out[at..], &mut scratch).unwrap();
            decoded.push(frame);
            at += used;
        }
        assert_eq!(decoded, all_frames());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut scratch = AlignedVec::new();
        for frame in all_frames()
            .into_iter()
            .filter(|f| !matches!(f, Frame::Batch(b) if b.len() > 100))
        {
            let mut out = Vec::new();
            encode(&frame, &mut out).unwrap();
            for cut in 0..out.len() {
                assert!(
                    matches!(
                        decode(&out[..cut], &mut scratch),
                        Err(FrameError::Truncated { .. })
                    ),
                    "{frame:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn length_over_max_is_refused_before_reading() {
        let mut bytes = ((FRAME_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let error = decode(&bytes, &mut AlignedVec::new()).unwrap_err();
        assert_eq!(
            error,
            FrameError::TooLong {
                bytes: FRAME_BYTES_MAX + 1,
                max_bytes: FRAME_BYTES_MAX
            }
        );
        assert!(error.to_string().contains("longer than the maximum"));
    }

    #[test]
    fn oversized_batch_is_refused_on_encode() {
        let mut out = vec![9];
        let error = encode(&Frame::Batch(vec![0; FRAME_BYTES_MAX]), &mut out).unwrap_err();
        assert!(matches!(error, FrameError::TooLong { .. }));
        assert_eq!(out, vec![9]);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut scratch = AlignedVec::new();
        for archive in [&[][..], &[0xFF; 3], &[0xFF; 8], &[0x7F; 16], &[0xFF; 64]] {
            assert!(
                matches!(
                    decode_archive(archive, &mut scratch),
                    Err(FrameError::Invalid(_))
                ),
                "{archive:?}"
            );
        }
    }

    /// A small deterministic generator; enough to explore bytes without a
    /// dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut scratch = AlignedVec::new();
        let encoded: Vec<Vec<u8>> = all_frames()
            .iter()
            .filter(|f| !matches!(f, Frame::Batch(b) if b.len() > 100))
            .map(|frame| {
                let mut out = Vec::new();
                encode(frame, &mut out).unwrap();
                out
            })
            .collect();
        for round in 0..200_000 {
            let mut bytes = encoded[round % encoded.len()].clone();
            match rng.next() % 4 {
                // Flip one to three bytes anywhere (prefix included).
                0 | 1 => {
                    for _ in 0..=(rng.next() % 3) {
                        let at = rng.next() as usize % bytes.len();
                        bytes[at] ^= (rng.next() % 255 + 1) as u8;
                    }
                }
                // Entirely random bytes with a plausible prefix.
                2 => {
                    let len = (rng.next() % 48) as usize;
                    bytes = (len as u32).to_le_bytes().to_vec();
                    bytes.extend((0..len).map(|_| rng.next() as u8));
                }
                // Truncate.
                _ => {
                    let cut = rng.next() as usize % bytes.len();
                    bytes.truncate(cut);
                    assert!(decode(&bytes, &mut scratch).is_err());
                }
            }
            // The owned path (large frames) sees the same bytes; must not panic.
            if bytes.len() >= FRAME_PREFIX_BYTES {
                let _ = decode_archive_owned(bytes[FRAME_PREFIX_BYTES..].to_vec(), &mut scratch);
            }
            // Must not panic; a decoded frame must be a well-formed value.
            if let Ok((frame, used)) = decode(&bytes, &mut scratch) {
                assert!(used <= bytes.len());
                let mut again = Vec::new();
                encode(&frame, &mut again).unwrap();
            }
        }
    }
}
