//! Number matching (PROTOCOL.md §14): the two-digit number that the page
//! which is signing in shows, and that the person types into the
//! authenticator. It is never in the token, so a link that reached someone
//! by message, without the page beside it, cannot be approved by a person
//! who never started that sign-in.

use std::{fmt, str::FromStr};

use rand_core::CryptoRngCore;

use crate::Error;

/// A number from 10 to 99: two digits, whatever the leading one, so that
/// the page and the authenticator show it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatchNumber(u8);

impl MatchNumber {
    pub const MIN: u8 = 10;
    pub const MAX: u8 = 99;

    /// Checks a number as an answer carries it.
    pub fn new(value: u32) -> Result<Self, Error> {
        u8::try_from(value).ok().filter(|n| (Self::MIN..=Self::MAX).contains(n)).map(Self).ok_or(Error::InvalidNumber)
    }

    /// A number for a new challenge, uniform over the 90 values: a byte
    /// below 180 (twice 90) is kept, any other is drawn again, so that no
    /// value is likelier than another.
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        const SPAN: u8 = MatchNumber::MAX - MatchNumber::MIN + 1;
        loop {
            let mut byte = [0];
            rng.fill_bytes(&mut byte);
            if byte[0] < 2 * SPAN {
                return Self(Self::MIN + byte[0] % SPAN);
            }
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl FromStr for MatchNumber {
    type Err = Error;

    /// Reads what a person typed: the digits alone, white space around them
    /// forgiven.
    fn from_str(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidNumber);
        }
        Self::new(text.parse().map_err(|_| Error::InvalidNumber)?)
    }
}

impl fmt::Display for MatchNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_two_digit_numbers_only() {
        assert_eq!(MatchNumber::new(10).map(MatchNumber::get), Ok(10));
        assert_eq!(MatchNumber::new(99).map(MatchNumber::get), Ok(99));
        for bad in [0, 9, 100, 256, 266, u32::MAX] {
            assert_eq!(MatchNumber::new(bad), Err(Error::InvalidNumber), "{bad}");
        }
    }

    #[test]
    fn reads_typed_digits() {
        assert_eq!(" 42\n".parse::<MatchNumber>().map(MatchNumber::get), Ok(42));
        for bad in ["", "4", "+42", "-42", "42.0", "٤٢", "4 2", "0042x"] {
            assert_eq!(bad.parse::<MatchNumber>(), Err(Error::InvalidNumber), "{bad:?}");
        }
    }

    #[test]
    fn random_numbers_stay_in_range() {
        let mut rng = rand::rngs::OsRng;
        let drawn: std::collections::BTreeSet<u8> = (0..5000).map(|_| MatchNumber::random(&mut rng).get()).collect();
        // 5,000 draws miss one of 90 values with a chance below 1e-22.
        assert_eq!(drawn, (10..=99).collect());
    }
}
