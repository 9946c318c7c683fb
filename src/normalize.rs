//! Text normalisation applied identically to training data and to evaluation prompts,
//! references and outputs (`--normalize`).
//!
//! A spec is one or more of these names joined by `+`, applied in this order:
//! - `nfkc`: Unicode NFKC (compatibility composition: full-width → ASCII, ligatures and Arabic
//!   presentation forms → base letters, …);
//! - `arabic`: strip tashkeel U+064B–U+0652 (fathatan … sukun), superscript alef U+0670 and
//!   tatweel U+0640; unify alef forms أ U+0623, إ U+0625, آ U+0622, ٱ U+0671 → ا U+0627;
//! - `yaa` (with `arabic`): alef maqsura ى U+0649 → yaa ي U+064A;
//! - `haa` (with `arabic`): taa marbuta ة U+0629 → haa ه U+0647.
//!
//! Examples: `nfkc`, `arabic`, `arabic+yaa`, `arabic+haa`, `nfkc+arabic+yaa+haa`.

use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// Characters `arabic` deletes: the tashkeel marks U+064B–U+0652, superscript alef U+0670 and
/// tatweel U+0640.
pub const ARABIC_STRIP: [char; 10] =
    ['\u{064B}', '\u{064C}', '\u{064D}', '\u{064E}', '\u{064F}', '\u{0650}', '\u{0651}', '\u{0652}', '\u{0670}', '\u{0640}'];

/// Alef forms `arabic` maps to bare alef U+0627: with hamza above, hamza below, madda, wasla.
pub const ARABIC_ALEFS: [char; 4] = ['\u{0623}', '\u{0625}', '\u{0622}', '\u{0671}'];

/// Bare alef.
pub const ALEF: char = '\u{0627}';
/// `yaa`: alef maqsura → yaa.
pub const YAA_MAP: (char, char) = ('\u{0649}', '\u{064A}');
/// `haa`: taa marbuta → haa.
pub const HAA_MAP: (char, char) = ('\u{0629}', '\u{0647}');

/// A normalisation: which steps run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Normalize {
    /// Unicode NFKC first.
    pub nfkc: bool,
    /// Arabic: strip tashkeel, superscript alef and tatweel; unify alef forms.
    pub arabic: bool,
    /// Arabic: alef maqsura → yaa.
    pub yaa: bool,
    /// Arabic: taa marbuta → haa.
    pub haa: bool,
}

impl Normalize {
    /// Parse a spec such as `nfkc`, `arabic+yaa` or `none` (see the module docs).
    pub fn parse(spec: &str) -> Result<Normalize> {
        let mut n = Normalize::default();
        if spec.trim().is_empty() || spec.trim().eq_ignore_ascii_case("none") {
            return Ok(n);
        }
        for part in spec.split('+').map(str::trim) {
            match part.to_ascii_lowercase().as_str() {
                "nfkc" => n.nfkc = true,
                "arabic" => n.arabic = true,
                "yaa" => n.yaa = true,
                "haa" => n.haa = true,
                _ => {
                    return Err(Error::usage(format!(
                        "--normalize {spec}: unknown step '{part}' (use nfkc, arabic, arabic+yaa, arabic+haa, or several joined by '+')"
                    )))
                }
            }
        }
        if (n.yaa || n.haa) && !n.arabic {
            return Err(Error::usage(format!("--normalize {spec}: 'yaa' and 'haa' are options of 'arabic' (e.g. arabic+yaa)")));
        }
        Ok(n)
    }

    /// Whether this does nothing.
    pub fn is_none(&self) -> bool {
        *self == Normalize::default()
    }

    /// Apply to a text.
    pub fn apply(&self, text: &str) -> String {
        if self.is_none() {
            return text.to_string();
        }
        let s: String = if self.nfkc { text.nfkc().collect() } else { text.to_string() };
        if !self.arabic {
            return s;
        }
        s.chars()
            .filter(|c| !ARABIC_STRIP.contains(c))
            .map(|c| match c {
                c if ARABIC_ALEFS.contains(&c) => ALEF,
                c if self.yaa && c == YAA_MAP.0 => YAA_MAP.1,
                c if self.haa && c == HAA_MAP.0 => HAA_MAP.1,
                c => c,
            })
            .collect()
    }
}

impl std::fmt::Display for Normalize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = [(self.nfkc, "nfkc"), (self.arabic, "arabic"), (self.yaa, "yaa"), (self.haa, "haa")]
            .iter()
            .filter(|p| p.0)
            .map(|p| p.1)
            .collect();
        f.write_str(if parts.is_empty() { "none".to_string() } else { parts.join("+") }.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arabic_steps() {
        let a = Normalize::parse("arabic").unwrap();
        // "al-madrasatu" with full tashkeel, a tatweel and hamzated alefs.
        assert_eq!(a.apply("الْمَدْرَسَةُ"), "المدرسة");
        assert_eq!(a.apply("أحمد إلى آخر ٱلكتاب"), "احمد الى اخر الكتاب");
        assert_eq!(a.apply("جـــميل"), "جميل");
        assert_eq!(a.apply("هٰذا"), "هذا");
        let all = Normalize::parse("arabic+yaa+haa").unwrap();
        assert_eq!(all.apply("إلى المدرسة"), "الي المدرسه");
        assert_eq!(Normalize::parse("arabic+haa").unwrap().apply("إلى المدرسة"), "الى المدرسه");
        assert_eq!(Normalize::parse("arabic+yaa").unwrap().apply("إلى المدرسة"), "الي المدرسة");
        assert_eq!(all.to_string(), "arabic+yaa+haa");
    }

    #[test]
    fn nfkc_and_parse_errors() {
        let n = Normalize::parse("nfkc").unwrap();
        assert_eq!(n.apply("ＡＢＣ１２３ ﬁ ｶﾞ"), "ABC123 fi ガ");
        // Arabic presentation form (isolated lam-alef ligature) → lam + alef.
        assert_eq!(n.apply("\u{FEFB}"), "\u{0644}\u{0627}");
        assert!(Normalize::parse("yaa").is_err());
        assert!(Normalize::parse("arabic+foo").unwrap_err().to_string().contains("foo"));
        assert!(Normalize::parse("none").unwrap().is_none());
        assert_eq!(Normalize::parse("none").unwrap().to_string(), "none");
    }
}
