//! Deterministic random numbers for tests and benchmarks.
#![allow(dead_code)]

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    pub fn bytes(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }
    /// A finite f16 bit pattern, often an extreme one (max, subnormal, zero, negative).
    pub fn f16_bits(&mut self) -> u16 {
        match self.below(10) {
            0 => 0x7BFF,                                  // 65504
            1 => 0xFBFF,                                  // -65504
            2 => 0x0001,                                  // smallest subnormal
            3 => 0x8000 | (self.below(0x3FF) as u16 + 1), // negative subnormal
            4 => 0x0000,
            _ => loop {
                let b = self.next_u64() as u16;
                if (b >> 10) & 0x1F != 0x1F {
                    break b;
                }
            },
        }
    }
    /// A finite f32 bit pattern across the whole exponent range.
    pub fn f32_bits(&mut self) -> u32 {
        loop {
            let b = self.next_u64() as u32;
            if (b >> 23) & 0xFF != 0xFF {
                break b;
            }
        }
    }
}
