//! The patient's consents, versioned: each capture, withdrawal or correction appends a version;
//! the latest version of each is what the consent engine evaluates.

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, Phi, Result, Store, on_pool};

/// One version of a consent.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentVersion {
    pub consent_id: String,
    pub version: i64,
    pub visit_id: Option<String>,
    /// Telechart's consent category (`telehealth`, `recording-ai`, `disclosure`, `research`).
    pub category: String,
    /// The FHIR Consent.status of this version.
    pub status: String,
    /// The FHIR Consent, as JSON.
    pub resource: Phi,
    pub actor: String,
    pub at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    consent_id: String,
    version: i64,
    visit_id: Option<String>,
    category: String,
    status: String,
    resource: String,
    actor: String,
    at: i64,
}

impl Store {
    /// Appends `consent` (its `version` must be the next of its consent: 1 for a new one) with
    /// its audit record, in one transaction. A version already taken is a conflict, so two
    /// concurrent withdrawals cannot both win.
    pub async fn record_consent(&self, tenant_id: &str, consent: &ConsentVersion, audit: &AuditEntry) -> Result<()> {
        let sealed = self.seal_consent(tenant_id, consent).await?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_consent!(tx, tenant_id, consent, &sealed)?;
            append_audit!(&mut *tx, audit, consent.at)?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub(crate) async fn seal_consent(&self, tenant_id: &str, consent: &ConsentVersion) -> Result<String> {
        let id = format!("{}.{}", consent.consent_id, consent.version);
        let slot = PhiSlot { tenant_id, table: "consents", column: "resource", row_id: &id };
        self.seal(slot, &consent.resource).await
    }

    /// The latest version of every consent of the tenant.
    pub async fn current_consents(&self, tenant_id: &str) -> Result<Vec<ConsentVersion>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Row>(
            "SELECT c.* FROM consents c WHERE c.tenant_id = $1 AND c.version = \
             (SELECT MAX(version) FROM consents l WHERE l.tenant_id = c.tenant_id AND l.consent_id = c.consent_id) \
             ORDER BY c.at, c.consent_id")
            .bind(tenant_id).fetch_all(pool).await)?;
        self.open_consents(tenant_id, rows).await
    }

    /// Every version of one consent, oldest first.
    pub async fn consent_history(&self, tenant_id: &str, consent_id: &str) -> Result<Vec<ConsentVersion>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Row>(
            "SELECT * FROM consents WHERE tenant_id = $1 AND consent_id = $2 ORDER BY version")
            .bind(tenant_id).bind(consent_id).fetch_all(pool).await)?;
        self.open_consents(tenant_id, rows).await
    }

    /// Consent versions recorded in a visit, oldest first.
    pub async fn consents_of_visit(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<ConsentVersion>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Row>(
            "SELECT * FROM consents WHERE tenant_id = $1 AND visit_id = $2 ORDER BY at, consent_id, version")
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        self.open_consents(tenant_id, rows).await
    }

    async fn open_consents(&self, tenant_id: &str, rows: Vec<Row>) -> Result<Vec<ConsentVersion>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let slot = PhiSlot { tenant_id, table: "consents", column: "resource", row_id: &r.id };
            out.push(ConsentVersion {
                resource: self.unseal(slot, &r.resource).await?,
                consent_id: r.consent_id,
                version: r.version,
                visit_id: r.visit_id,
                category: r.category,
                status: r.status,
                actor: r.actor,
                at: r.at,
            });
        }
        Ok(out)
    }
}

/// Inserts one consent version (sealed as `sealed`) in the open transaction `$tx`, if it is the
/// next version of its consent; a conflict otherwise.
macro_rules! insert_consent {
    ($tx:ident, $tenant:expr, $consent:expr, $sealed:expr) => {{
        let consent: &$crate::ConsentVersion = $consent;
        let (latest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(version) FROM consents WHERE tenant_id = $1 AND consent_id = $2")
                .bind($tenant)
                .bind(&consent.consent_id)
                .fetch_one(&mut *$tx)
                .await?;
        if latest.unwrap_or(0) + 1 != consent.version {
            Err($crate::StoreError::Conflict(format!(
                "consent {} is at version {}; version {} cannot be recorded",
                consent.consent_id,
                latest.unwrap_or(0),
                consent.version
            )))
        } else {
            sqlx::query(
                "INSERT INTO consents (tenant_id, id, consent_id, version, visit_id, category, status, resource, actor, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind($tenant)
            .bind(format!("{}.{}", consent.consent_id, consent.version))
            .bind(&consent.consent_id)
            .bind(consent.version)
            .bind(&consent.visit_id)
            .bind(&consent.category)
            .bind(&consent.status)
            .bind($sealed)
            .bind(&consent.actor)
            .bind(consent.at)
            .execute(&mut *$tx)
            .await?;
            Ok::<(), $crate::StoreError>(())
        }
    }};
}
pub(crate) use insert_consent;
