//! The ggml tensor type table: ids, block sizes and block byte sizes, the single source of
//! truth for every block format (mirrors `ggml.h` / `ggml.c` type_traits).

use std::fmt;

/// Number of elements in a k-quant super-block.
pub const QK_K: usize = 256;

macro_rules! ggml_types {
    ($( $name:ident = $id:literal, $blk:literal, $bytes:literal, $text:literal; )*) => {
        /// A ggml tensor element type (`enum ggml_type`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types, missing_docs)]
        pub enum GgmlType { $( $name, )* }

        impl GgmlType {
            /// Every type this table knows, in id order.
            pub const ALL: &'static [GgmlType] = &[$( GgmlType::$name, )*];

            /// Map a raw id to a type. Removed ids (4, 5, 31–33, 36–38) and unknown ids give `None`.
            pub fn from_id(id: u32) -> Option<Self> {
                match id { $( $id => Some(GgmlType::$name), )* _ => None }
            }
            /// The raw `ggml_type` id.
            pub fn id(self) -> u32 { match self { $( GgmlType::$name => $id, )* } }
            /// Elements per block.
            pub fn block_size(self) -> usize { match self { $( GgmlType::$name => $blk, )* } }
            /// Bytes per block.
            pub fn type_size(self) -> usize { match self { $( GgmlType::$name => $bytes, )* } }
            /// Upper-case name as ggml prints it.
            pub fn name(self) -> &'static str { match self { $( GgmlType::$name => $text, )* } }
        }
    };
}

ggml_types! {
    F32 = 0, 1, 4, "F32";
    F16 = 1, 1, 2, "F16";
    Q4_0 = 2, 32, 18, "Q4_0";
    Q4_1 = 3, 32, 20, "Q4_1";
    Q5_0 = 6, 32, 22, "Q5_0";
    Q5_1 = 7, 32, 24, "Q5_1";
    Q8_0 = 8, 32, 34, "Q8_0";
    Q8_1 = 9, 32, 36, "Q8_1";
    Q2_K = 10, 256, 84, "Q2_K";
    Q3_K = 11, 256, 110, "Q3_K";
    Q4_K = 12, 256, 144, "Q4_K";
    Q5_K = 13, 256, 176, "Q5_K";
    Q6_K = 14, 256, 210, "Q6_K";
    Q8_K = 15, 256, 292, "Q8_K";
    IQ2_XXS = 16, 256, 66, "IQ2_XXS";
    IQ2_XS = 17, 256, 74, "IQ2_XS";
    IQ3_XXS = 18, 256, 98, "IQ3_XXS";
    IQ1_S = 19, 256, 50, "IQ1_S";
    IQ4_NL = 20, 32, 18, "IQ4_NL";
    IQ3_S = 21, 256, 110, "IQ3_S";
    IQ2_S = 22, 256, 82, "IQ2_S";
    IQ4_XS = 23, 256, 136, "IQ4_XS";
    I8 = 24, 1, 1, "I8";
    I16 = 25, 1, 2, "I16";
    I32 = 26, 1, 4, "I32";
    I64 = 27, 1, 8, "I64";
    F64 = 28, 1, 8, "F64";
    IQ1_M = 29, 256, 56, "IQ1_M";
    BF16 = 30, 1, 2, "BF16";
    TQ1_0 = 34, 256, 54, "TQ1_0";
    TQ2_0 = 35, 256, 66, "TQ2_0";
    MXFP4 = 39, 32, 17, "MXFP4";
    NVFP4 = 40, 64, 36, "NVFP4";
    Q1_0 = 41, 128, 18, "Q1_0";
    Q2_0 = 42, 64, 18, "Q2_0";
}

impl GgmlType {
    /// Parse a type name case-insensitively ("q4_k", "F16", …).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// Bytes of one row of `n` elements; `None` if `n` is not a multiple of the block size.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let b = self.block_size() as u64;
        if n % b != 0 {
            return None;
        }
        (n / b).checked_mul(self.type_size() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `general.file_type` values (a `llama_ftype`, not a ggml type), named as llama.cpp does.
pub fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "ALL_F32",
        1 => "MOSTLY_F16",
        2 => "MOSTLY_Q4_0",
        3 => "MOSTLY_Q4_1",
        7 => "MOSTLY_Q8_0",
        8 => "MOSTLY_Q5_0",
        9 => "MOSTLY_Q5_1",
        10 => "MOSTLY_Q2_K",
        11 => "MOSTLY_Q3_K_S",
        12 => "MOSTLY_Q3_K_M",
        13 => "MOSTLY_Q3_K_L",
        14 => "MOSTLY_Q4_K_S",
        15 => "MOSTLY_Q4_K_M",
        16 => "MOSTLY_Q5_K_S",
        17 => "MOSTLY_Q5_K_M",
        18 => "MOSTLY_Q6_K",
        19 => "MOSTLY_IQ2_XXS",
        20 => "MOSTLY_IQ2_XS",
        21 => "MOSTLY_Q2_K_S",
        22 => "MOSTLY_IQ3_XS",
        23 => "MOSTLY_IQ3_XXS",
        24 => "MOSTLY_IQ1_S",
        25 => "MOSTLY_IQ4_NL",
        26 => "MOSTLY_IQ3_S",
        27 => "MOSTLY_IQ3_M",
        28 => "MOSTLY_IQ2_S",
        29 => "MOSTLY_IQ2_M",
        30 => "MOSTLY_IQ4_XS",
        31 => "MOSTLY_IQ1_M",
        32 => "MOSTLY_BF16",
        36 => "MOSTLY_TQ1_0",
        37 => "MOSTLY_TQ2_0",
        38 => "MOSTLY_MXFP4_MOE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_removed_ids_are_rejected() {
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, 1000] {
            assert_eq!(GgmlType::from_id(removed), None, "id {removed}");
        }
    }

    #[test]
    fn row_bytes_checks_block_multiple() {
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
        assert_eq!(GgmlType::F16.row_bytes(3), Some(6));
    }
}
