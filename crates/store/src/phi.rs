//! The one type every PHI value takes on its way into and out of the database. Encryption at rest
//! lands in `seal`/`open` without touching any caller; the stored form carries a format prefix so
//! rows written before and after a key change can coexist.

use std::fmt;

use crate::{Result, StoreError};

/// Protected health information in memory. `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Phi(String);

/// PHI as stored: opaque text with a format prefix.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedPhi(pub(crate) String);

const PLAIN_V0: &str = "p0:";

impl Phi {
    pub fn new(value: impl Into<String>) -> Self {
        Phi(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }

    pub(crate) fn seal(&self) -> SealedPhi {
        SealedPhi(format!("{PLAIN_V0}{}", self.0))
    }

    pub(crate) fn open(sealed: &str) -> Result<Phi> {
        sealed
            .strip_prefix(PLAIN_V0)
            .map(|plain| Phi(plain.to_owned()))
            .ok_or_else(|| StoreError::Corrupt("a PHI column has an unknown storage format".to_owned()))
    }
}

impl fmt::Debug for Phi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phi(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_round_trips_and_never_debug_prints() {
        let phi = Phi::new("Patient/123");
        let sealed = phi.seal();
        assert_eq!(Phi::open(&sealed.0).unwrap(), phi);
        assert_eq!(format!("{phi:?}"), "Phi(<11 bytes redacted>)");
        assert!(Phi::open("zz:abc").is_err());
    }
}
