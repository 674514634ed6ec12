//! The one type every PHI value takes in memory, and the sealing of PHI columns at rest.

use std::fmt;

use crate::keys::{self, PhiSlot};
use crate::{Result, Store, StoreError};

/// Protected health information in memory. `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Phi(String);

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
}

impl fmt::Debug for Phi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phi(<{} bytes redacted>)", self.0.len())
    }
}

/// Every sealed column — PHI, and secrets kept the same way: (table, column). Re-encryption, key
/// retirement and the canary tests walk this list, so a new one is added here or it is not
/// protected.
pub const PHI_COLUMNS: &[(&str, &str)] = &[
    ("visits", "patient"),
    ("artifacts", "payload"),
    ("users", "totp_secret"),
    ("signing_keys", "private_key"),
    ("webhook_deliveries", "payload"),
    ("ehr_appointments", "patient"),
    ("order_tracking", "results"),
    ("consents", "resource"),
    ("break_glass", "reason_text"),
    ("break_glass", "review_note"),
    ("disclosures", "recipient_patient"),
    ("legal_holds", "patient"),
    ("note_drafts", "body"),
    ("note_drafts", "signed_text"),
    ("care_plan_drafts", "body"),
    ("care_plan_drafts", "signed_body"),
    ("patient_tasks", "text"),
];

impl Store {
    /// Encrypts `phi` for its slot under the tenant's active data key. Call it before opening a
    /// transaction: it may create the tenant's first data key.
    pub(crate) async fn seal(&self, slot: PhiSlot<'_>, phi: &Phi) -> Result<String> {
        let (dek_id, key) = self.active_data_key(slot.tenant_id).await?;
        keys::seal_with(&dek_id, &key, slot, phi.expose())
    }

    pub(crate) async fn unseal(&self, slot: PhiSlot<'_>, stored: &str) -> Result<Phi> {
        let dek_id = keys::dek_of(stored).ok_or_else(|| {
            StoreError::Corrupt(format!("{}.{} of row {} is not encrypted", slot.table, slot.column, slot.row_id))
        })?;
        let key = self.data_key(dek_id).await?;
        keys::open_with(&key, slot, stored).map(Phi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_never_debug_prints() {
        assert_eq!(format!("{:?}", Phi::new("Patient/123")), "Phi(<11 bytes redacted>)");
    }
}
