//! SHA-256 as the xtask needs it: a few MB per image (the binary's SHA256SUMS line, the layer's
//! digest), on the path from an edit to an image. On x86-64 CPUs with the SHA extensions (Intel
//! since Ice Lake and Goldmont, AMD since Zen) the rounds run in hardware, about ten times as fast
//! as hmac-sha256's portable code, which runs everywhere else. The tests hold both to the same
//! digests.
//!
//! Its own crate so that it is optimized in dev builds (the workspace's profile says so) while
//! the xtask itself compiles quickly; hmac-sha256's well-known crate costs ~0.3 s to build and
//! the crates that bring SHA-NI (sha2 with typenum and generic-array) ~3 s.

/// A SHA-256 being computed.
pub struct Sha256(Engine);

enum Engine {
    #[cfg(target_arch = "x86_64")]
    Hardware(hardware::Blocks),
    Portable(hmac_sha256::Hash),
}

impl Default for Sha256 {
    fn default() -> Sha256 {
        #[cfg(target_arch = "x86_64")]
        if hardware::available() {
            return Sha256(Engine::Hardware(hardware::Blocks::default()));
        }
        Sha256::portable()
    }
}

impl Sha256 {
    /// The portable code, whatever the CPU (the tests compare the two).
    pub fn portable() -> Sha256 {
        Sha256(Engine::Portable(hmac_sha256::Hash::new()))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            #[cfg(target_arch = "x86_64")]
            Engine::Hardware(blocks) => blocks.update(bytes),
            Engine::Portable(hash) => hash.update(bytes),
        }
    }

    pub fn finalize(self) -> [u8; 32] {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Engine::Hardware(blocks) => blocks.finalize(),
            Engine::Portable(hash) => hash.finalize(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod hardware {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// FIPS 180-4's initial hash value and round constants.
    const H0: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The message in 64-byte blocks: the hash state, the bytes of a block not yet whole, and
    /// the length so far. Made only when `available()`.
    pub struct Blocks {
        state: [u32; 8],
        pending: [u8; 64],
        pending_len: usize,
        total: u64,
    }

    impl Default for Blocks {
        fn default() -> Blocks {
            Blocks {
                state: H0,
                pending: [0; 64],
                pending_len: 0,
                total: 0,
            }
        }
    }

    impl Blocks {
        pub fn update(&mut self, mut bytes: &[u8]) {
            self.total += bytes.len() as u64;
            if self.pending_len > 0 {
                let take = bytes.len().min(64 - self.pending_len);
                self.pending[self.pending_len..][..take].copy_from_slice(&bytes[..take]);
                self.pending_len += take;
                bytes = &bytes[take..];
                if self.pending_len < 64 {
                    return;
                }
                let block = self.pending;
                self.compress(&block);
                self.pending_len = 0;
            }
            let whole = bytes.len() / 64 * 64;
            self.compress(&bytes[..whole]);
            let rest = &bytes[whole..];
            self.pending[..rest.len()].copy_from_slice(rest);
            self.pending_len = rest.len();
        }

        /// FIPS 180-4's padding: 0x80, zeros, the length in bits (big-endian) ending a block.
        pub fn finalize(mut self) -> [u8; 32] {
            let bits = self.total.wrapping_mul(8);
            let mut tail = [0u8; 128];
            tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
            tail[self.pending_len] = 0x80;
            let len = if self.pending_len < 56 { 64 } else { 128 };
            tail[len - 8..len].copy_from_slice(&bits.to_be_bytes());
            self.compress(&tail[..len]);
            let mut digest = [0u8; 32];
            for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
                out.copy_from_slice(&word.to_be_bytes());
            }
            digest
        }

        fn compress(&mut self, blocks: &[u8]) {
            debug_assert!(blocks.len() % 64 == 0);
            // SAFETY: a `Blocks` is made only when the CPU has these features (`available`).
            unsafe { compress(&mut self.state, blocks) }
        }
    }

    /// The SHA-256 compression function over whole 64-byte blocks, with the SHA extensions.
    /// SHA256RNDS2 does two rounds on the state held as {A,B,E,F} and {C,D,G,H}; SHA256MSG1 and
    /// SHA256MSG2 extend the message schedule four words at a time.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        // SAFETY (all loads and stores): unaligned, within `state`, `K` and each 64-byte block.
        let abcd = _mm_loadu_si128(state.as_ptr().cast());
        let efgh = _mm_loadu_si128(state.as_ptr().add(4).cast());
        // {A,B,C,D} {E,F,G,H} (lane 0 first) to {F,E,B,A} and {H,G,D,C}.
        let badc = _mm_shuffle_epi32(abcd, 0xB1);
        let hgfe = _mm_shuffle_epi32(efgh, 0x1B);
        let mut abef = _mm_alignr_epi8(badc, hgfe, 8);
        let mut cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);
        // Each 32-bit word of the message is big-endian.
        let byte_swap = _mm_set_epi64x(0x0c0d0e0f_08090a0b, 0x04050607_00010203);
        for block in blocks.chunks_exact(64) {
            let (abef_before, cdgh_before) = (abef, cdgh);
            let mut w = [_mm_setzero_si128(); 4];
            for (i, w) in w.iter_mut().enumerate() {
                let words = _mm_loadu_si128(block.as_ptr().add(16 * i).cast());
                *w = _mm_shuffle_epi8(words, byte_swap);
            }
            // Sixteen groups of four rounds; w[i % 4] holds the group's four message words.
            for i in 0..16 {
                let current = w[i % 4];
                let k = _mm_loadu_si128(K.as_ptr().add(4 * i).cast());
                let wk = _mm_add_epi32(current, k);
                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
                if (3..15).contains(&i) {
                    // The next group's words: w[t-16] + σ0(w[t-15]) (MSG1, done three groups
                    // ago) + w[t-7], then + σ1(w[t-2]) (MSG2).
                    let seven_back = _mm_alignr_epi8(current, w[(i + 3) % 4], 4);
                    let next = _mm_add_epi32(w[(i + 1) % 4], seven_back);
                    w[(i + 1) % 4] = _mm_sha256msg2_epu32(next, current);
                }
                abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
                if (1..13).contains(&i) {
                    w[(i + 3) % 4] = _mm_sha256msg1_epu32(w[(i + 3) % 4], current);
                }
            }
            abef = _mm_add_epi32(abef, abef_before);
            cdgh = _mm_add_epi32(cdgh, cdgh_before);
        }
        // Back to {A,B,C,D} {E,F,G,H}.
        let abef_in_order = _mm_shuffle_epi32(abef, 0x1B);
        let ghcd = _mm_shuffle_epi32(cdgh, 0xB1);
        let abcd = _mm_blend_epi16(abef_in_order, ghcd, 0xF0);
        let efgh = _mm_alignr_epi8(ghcd, abef_in_order, 8);
        _mm_storeu_si128(state.as_mut_ptr().cast(), abcd);
        _mm_storeu_si128(state.as_mut_ptr().add(4).cast(), efgh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: [u8; 32]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn digest(mut hash: Sha256, chunks: &[&[u8]]) -> String {
        for chunk in chunks {
            hash.update(chunk);
        }
        hex(hash.finalize())
    }

    #[test]
    fn fips_180_examples() {
        let two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        for (input, expected) in [
            (
                &b""[..],
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                two_blocks,
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
        ] {
            assert_eq!(digest(Sha256::default(), &[input]), expected);
            assert_eq!(digest(Sha256::portable(), &[input]), expected);
        }
    }

    #[test]
    fn every_length_and_split_as_the_portable_code() {
        // Bytes that are not a pattern of the block size, every length around the padding's
        // edges, and the same message fed in pieces that cut blocks anywhere.
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in (0..300).chain([1000, 4095, 4096, 4097, 5000]) {
            let message = &data[..len];
            let expected = digest(Sha256::portable(), &[message]);
            assert_eq!(
                digest(Sha256::default(), &[message]),
                expected,
                "length {len}"
            );
            for cut in [1, 7, 55, 56, 63, 64, 65, 129] {
                let pieces: Vec<&[u8]> = message.chunks(cut).collect();
                assert_eq!(
                    digest(Sha256::default(), &pieces),
                    expected,
                    "length {len} in pieces of {cut}"
                );
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_sha_extensions_are_used_where_the_cpu_has_them() {
        let hardware = hardware::available();
        assert_eq!(matches!(Sha256::default().0, Engine::Hardware(_)), hardware);
        if !hardware {
            eprintln!("this CPU has no SHA extensions: the comparisons tested the portable code");
        }
    }
}
