//! Data keys in the database: finding or creating a tenant's active key, and the rotation steps
//! behind `telechart keys rotate` (re-wrap under a new KEK, new data keys, re-encryption,
//! retirement). Every step is safe to run while the server works.

use std::sync::Arc;

use aws_lc_rs::aead::LessSafeKey;

use crate::keys::{DataKeyRow, PhiSlot, dek_of};
use crate::phi::PHI_COLUMNS;
use crate::{Result, Store, StoreError, on_pool};

/// One data key, as `telechart keys status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyStatus {
    pub tenant_id: String,
    pub id: String,
    pub kek_id: String,
    pub active: bool,
    /// PHI values still sealed with this key.
    pub values: i64,
}

impl Store {
    pub(crate) async fn active_data_key(&self, tenant_id: &str) -> Result<(String, Arc<LessSafeKey>)> {
        if let Some(id) = self.keys.cached_active(tenant_id)
            && let Some(key) = self.keys.cached(&id)
        {
            return Ok((id, key));
        }
        for _ in 0..3 {
            let seen = self.keys.generation();
            let row = on_pool!(self, pool => sqlx::query_as::<_, DataKeyRow>(
                "SELECT tenant_id, id, wrapped, kek_id, active FROM data_keys WHERE tenant_id = $1 AND active = 1")
                .bind(tenant_id).fetch_optional(pool).await)?;
            if let Some(row) = row {
                let key = self.keys.admit(&row)?;
                self.keys.remember_active(tenant_id, &row.id, seen);
                return Ok((row.id, key));
            }
            let fresh = self.keys.new_data_key(tenant_id)?;
            let inserted = on_pool!(self, pool => sqlx::query(
                "INSERT INTO data_keys (tenant_id, id, wrapped, kek_id, active, created_at) VALUES ($1, $2, $3, $4, 1, 0)")
                .bind(&fresh.tenant_id).bind(&fresh.id).bind(&fresh.wrapped).bind(&fresh.kek_id)
                .execute(pool).await.map(|r| r.rows_affected()));
            match inserted {
                Ok(_) => {
                    let key = self.keys.admit(&fresh)?;
                    self.keys.remember_active(tenant_id, &fresh.id, seen);
                    return Ok((fresh.id, key));
                }
                // Another instance created the tenant's key first: use theirs.
                Err(err) if StoreError::is_unique_violation(&err) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::Key(format!("could not establish a data key for tenant {tenant_id}")))
    }

    pub(crate) async fn data_key(&self, id: &str) -> Result<Arc<LessSafeKey>> {
        if let Some(key) = self.keys.cached(id) {
            return Ok(key);
        }
        let row = on_pool!(self, pool => sqlx::query_as::<_, DataKeyRow>(
            "SELECT tenant_id, id, wrapped, kek_id, active FROM data_keys WHERE id = $1")
            .bind(id).fetch_optional(pool).await)?;
        let Some(row) = row else {
            let shredded: Option<(i64, String)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT shredded_at, reason FROM shredded_keys WHERE id = $1").bind(id).fetch_optional(pool).await)?;
            return Err(StoreError::Key(match shredded {
                Some((at, reason)) => format!(
                    "data key {id} was crypto-shredded at {} ({reason}): what it sealed is gone for good",
                    chrono::DateTime::from_timestamp_millis(at).map(|t| t.to_rfc3339()).unwrap_or_default()
                ),
                None => format!("data key {id} does not exist (retired?)"),
            }));
        };
        self.keys.admit(&row)
    }

    /// Crypto-shredding: destroys every data key of `tenant_id`, so every PHI value they sealed
    /// — in this database and in any backup of it — can never be read again. Refused while a
    /// legal hold of the tenant is in force. Audited in the same transaction. Returns the ids
    /// destroyed. This process forgets them at once; other running processes keep the keys they
    /// already unwrapped until they restart.
    pub async fn shred_tenant_data_keys(
        &self,
        tenant_id: &str,
        actor: &str,
        reason: &str,
        audit: &crate::AuditEntry,
        now_ms: i64,
    ) -> Result<Vec<String>> {
        let holds = self.legal_holds(tenant_id, true).await?;
        if !holds.is_empty() {
            return Err(StoreError::Conflict(format!(
                "tenant {tenant_id} has {} legal hold(s) in force; its data may not be destroyed until they are released",
                holds.len()
            )));
        }
        let ids = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM data_keys WHERE tenant_id = $1 ORDER BY id")
                .bind(tenant_id).fetch_all(&mut *tx).await?;
            for (id,) in &ids {
                sqlx::query(
                    "INSERT INTO shredded_keys (id, tenant_id, shredded_at, shredded_by, reason) VALUES ($1, $2, $3, $4, $5)")
                    .bind(id).bind(tenant_id).bind(now_ms).bind(actor).bind(reason)
                    .execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM data_keys WHERE tenant_id = $1").bind(tenant_id).execute(&mut *tx).await?;
            crate::audit::append_audit!(&mut *tx, audit, now_ms)?;
            tx.commit().await?;
            Ok::<Vec<String>, StoreError>(ids.into_iter().map(|(id,)| id).collect())
        })?;
        self.keys.forget_keys(&ids);
        self.keys.forget_active(tenant_id);
        Ok(ids)
    }

    async fn data_key_rows(&self) -> Result<Vec<DataKeyRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, DataKeyRow>(
            "SELECT tenant_id, id, wrapped, kek_id, active FROM data_keys ORDER BY tenant_id, created_at, id")
            .fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Replaces the key-encryption keys this store uses (after the key files were rolled).
    pub fn reload_keys(&self, keys: crate::KeyConfig) {
        self.keys.reload(keys);
    }

    /// KEK rotation: re-wraps every data key still wrapped by a previous KEK under the current
    /// one. Data is untouched. Afterwards the previous KEK can be removed from the configuration.
    pub async fn rewrap_data_keys(&self) -> Result<u64> {
        let current = self.keys.config.read().map(|c| c.current.id().to_owned()).unwrap_or_default();
        let mut done = 0;
        for row in self.data_key_rows().await?.into_iter().filter(|r| r.kek_id != current) {
            let rewrapped = self.keys.rewrap(&row)?;
            let updated = on_pool!(self, pool => sqlx::query(
                "UPDATE data_keys SET wrapped = $1, kek_id = $2 WHERE id = $3 AND kek_id = $4")
                .bind(&rewrapped.wrapped).bind(&rewrapped.kek_id).bind(&row.id).bind(&row.kek_id)
                .execute(pool).await.map(|r| r.rows_affected()))?;
            done += updated;
        }
        Ok(done)
    }

    /// Data-key rotation: every tenant with a data key gets a new active one; the old keys stay
    /// to decrypt what they sealed until [`Store::reencrypt_batch`] has moved it.
    pub async fn rotate_data_keys(&self, now_ms: i64) -> Result<Vec<String>> {
        let mut tenants: Vec<String> =
            self.data_key_rows().await?.into_iter().filter(|r| r.active == 1).map(|r| r.tenant_id).collect();
        tenants.dedup();
        let mut rotated = Vec::new();
        for tenant in tenants {
            let fresh = self.keys.new_data_key(&tenant)?;
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE data_keys SET active = 0 WHERE tenant_id = $1 AND active = 1")
                    .bind(&tenant).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO data_keys (tenant_id, id, wrapped, kek_id, active, created_at) VALUES ($1, $2, $3, $4, 1, $5)")
                    .bind(&fresh.tenant_id).bind(&fresh.id).bind(&fresh.wrapped).bind(&fresh.kek_id).bind(now_ms)
                    .execute(&mut *tx).await?;
                tx.commit().await?;
                Ok::<(), StoreError>(())
            })?;
            self.keys.forget_active(&tenant);
            rotated.push(fresh.id);
        }
        Ok(rotated)
    }

    /// Re-encrypts up to `limit` PHI values per column that are not sealed with their tenant's
    /// active key. Returns how many it moved; run until 0. Each value is swapped only if it is
    /// unchanged since read, so concurrent writers are never overwritten.
    pub async fn reencrypt_batch(&self, limit: i64) -> Result<u64> {
        let active: Vec<DataKeyRow> = self.data_key_rows().await?.into_iter().filter(|r| r.active == 1).collect();
        let mut moved = 0;
        for key in &active {
            let pattern = format!("e1:{}:%", key.id);
            for (table, column) in PHI_COLUMNS {
                let select =
                    format!("SELECT id, {column} FROM {table} WHERE tenant_id = $1 AND {column} NOT LIKE $2 LIMIT $3");
                let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(select.clone()))
                    .bind(&key.tenant_id).bind(&pattern).bind(limit).fetch_all(pool).await)?;
                for (id, stored) in rows {
                    let slot = PhiSlot { tenant_id: &key.tenant_id, table, column, row_id: &id };
                    let phi = self.unseal(slot, &stored).await?;
                    let sealed = self.seal(slot, &phi).await?;
                    let update =
                        format!("UPDATE {table} SET {column} = $1 WHERE tenant_id = $2 AND id = $3 AND {column} = $4");
                    moved += on_pool!(self, pool => sqlx::query(sqlx::AssertSqlSafe(update))
                        .bind(&sealed).bind(&key.tenant_id).bind(&id).bind(&stored)
                        .execute(pool).await.map(|r| r.rows_affected()))?;
                }
            }
        }
        Ok(moved)
    }

    /// Deletes inactive data keys that no PHI value uses any more. Returns the retired ids.
    pub async fn retire_data_keys(&self) -> Result<Vec<String>> {
        let mut retired = Vec::new();
        for status in self.data_key_status().await? {
            if status.active || status.values > 0 {
                continue;
            }
            on_pool!(self, pool => sqlx::query("DELETE FROM data_keys WHERE id = $1 AND active = 0")
                .bind(&status.id).execute(pool).await.map(|r| r.rows_affected()))?;
            retired.push(status.id);
        }
        Ok(retired)
    }

    pub async fn data_key_status(&self) -> Result<Vec<DataKeyStatus>> {
        let mut out = Vec::new();
        for row in self.data_key_rows().await? {
            let pattern = format!("e1:{}:%", row.id);
            let mut values = 0;
            for (table, column) in PHI_COLUMNS {
                let count = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1 AND {column} LIKE $2");
                let (n,): (i64,) = on_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(count))
                    .bind(&row.tenant_id).bind(&pattern).fetch_one(pool).await)?;
                values += n;
            }
            out.push(DataKeyStatus {
                tenant_id: row.tenant_id,
                id: row.id,
                kek_id: row.kek_id,
                active: row.active == 1,
                values,
            });
        }
        Ok(out)
    }

    /// The data key a stored value names (for tests and diagnostics).
    pub fn sealed_with(stored: &str) -> Option<&str> {
        dek_of(stored)
    }
}
