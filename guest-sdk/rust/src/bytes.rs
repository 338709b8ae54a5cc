//! Copying short byte strings (keys, values, fields) without a host call.
//!
//! In Wasm, a copy whose length is only known at run time compiles to
//! `memory.copy` (or, without bulk memory, to wasi-libc's byte loop), and
//! wasmtime runs `memory.copy` as a call out of the guest into a host
//! function. A map operator makes four such copies per record (decoding its
//! key and value, encoding both into the output), each a full call for a
//! few dozen bytes. Runs of up to [`SHORT_MAX`] bytes are copied here with
//! a few fixed-size moves instead, which compile to plain loads and stores
//! (16 bytes each with SIMD): overlapping first and last chunks, so no loop
//! either. Natively the platform's `memcpy` is cheaper than that and is
//! used as is.
//!
//! Everything here is `#[inline(always)]`: as a function of its own the
//! copy measured no faster than `memory.copy` (its call and its entry's
//! epoch check cost what the moves save); inlined into the codec it cut
//! the Wasm map operator's time per record by 10-15% (benches/
//! wasm_overhead, both builds in one process, alternating rounds).

/// The longest copy done with fixed-size moves.
const SHORT_MAX: usize = 128;

/// Appends `src` to `out`.
#[inline(always)]
pub fn extend(out: &mut Vec<u8>, src: &[u8]) {
    if cfg!(target_arch = "wasm32") && src.len() <= SHORT_MAX {
        extend_short(out, src);
    } else {
        out.extend_from_slice(src);
    }
}

/// `src` as a new vector.
#[inline(always)]
pub fn to_vec(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    extend(&mut out, src);
    out
}

/// [`extend`] by fixed-size moves; `src` is at most [`SHORT_MAX`] bytes.
#[inline(always)]
fn extend_short(out: &mut Vec<u8>, src: &[u8]) {
    let n = src.len();
    debug_assert!(n <= SHORT_MAX);
    out.reserve(n);
    let at = out.len();
    // SAFETY: `reserve` made room for `n` more bytes after `at`, and
    // `copy_short` writes every one of them (reading only `src`'s `n`), so
    // they are initialised before `set_len`. `out` is borrowed mutably, so
    // `src` cannot lie inside it.
    unsafe {
        copy_short(src.as_ptr(), out.as_mut_ptr().add(at), n);
        out.set_len(at + n);
    }
}

/// Copies `N` bytes at offset `at` of `src` to the same offset of `dst`.
///
/// # Safety
/// `at + N` bytes must be readable at `src` and writable at `dst`, and the
/// two must not overlap.
#[inline(always)]
unsafe fn chunk<const N: usize>(src: *const u8, dst: *mut u8, at: usize) {
    // SAFETY: the caller's.
    unsafe { std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), N) }
}

/// Copies `n <= SHORT_MAX` bytes from `src` to `dst`: chunks of 16 from
/// the start while more than 16 are left after them, then the last 16
/// (overlapping the one before); under 16, two overlapping halves.
///
/// # Safety
/// `n` bytes must be readable at `src` and writable at `dst`, and the two
/// must not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY (every chunk): each lies within the first `n` bytes.
    unsafe {
        if n >= 16 {
            // Unrolled by the macro on purpose: a loop would carry an
            // epoch check. After the first, a chunk at `at` is copied when
            // more than 16 bytes follow it; the last 16 always are.
            macro_rules! chunks_of_16_below_the_last {
                ($($at:literal)*) => {$(
                    if n > $at + 16 {
                        chunk::<16>(src, dst, $at);
                    }
                )*};
            }
            chunk::<16>(src, dst, 0);
            chunks_of_16_below_the_last!(16 32 48 64 80 96);
            chunk::<16>(src, dst, n - 16);
        } else if n >= 8 {
            chunk::<8>(src, dst, 0);
            chunk::<8>(src, dst, n - 8);
        } else if n >= 4 {
            chunk::<4>(src, dst, 0);
            chunk::<4>(src, dst, n - 4);
        } else if n > 0 {
            chunk::<1>(src, dst, 0);
            chunk::<1>(src, dst, n / 2);
            chunk::<1>(src, dst, n - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_copies_append_exactly_the_bytes_at_every_length() {
        let source: Vec<u8> = (0..=SHORT_MAX as u8).map(|b| b.wrapping_mul(37)).collect();
        for n in 0..=SHORT_MAX {
            for offset in [0, 1, 7] {
                let src = &source[offset.min(source.len() - n)..][..n];
                let mut out = b"head".to_vec();
                extend_short(&mut out, src);
                assert_eq!(&out[..4], b"head", "length {n}");
                assert_eq!(&out[4..], src, "length {n}");
            }
        }
    }

    #[test]
    fn long_copies_and_new_vectors_hold_the_bytes() {
        let long: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = vec![1, 2];
        extend(&mut out, &long);
        assert_eq!(&out[2..], &long[..]);
        assert_eq!(to_vec(&long[..5]), &long[..5]);
        assert!(to_vec(&[]).is_empty());
    }
}
