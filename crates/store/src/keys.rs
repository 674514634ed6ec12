//! Envelope encryption of PHI at rest: AES-256-GCM under per-tenant data keys (DEKs), each DEK
//! wrapped by a key-encryption key (KEK) that lives outside the database (a key file or the
//! environment). The additional authenticated data binds every ciphertext to its tenant, table,
//! column and row, so a ciphertext copied into another row fails to decrypt.
//!
//! Stored form: `e1:{dek id}:{base64(nonce ‖ ciphertext ‖ tag)}`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::{Result, StoreError};

const KEY_LEN: usize = 32;
pub(crate) const ENCRYPTED_V1: &str = "e1:";

/// A key-encryption key. Its id is a fingerprint, so the database can say which KEK wrapped a
/// DEK without holding the KEK. `Debug` never prints key material.
#[derive(Clone)]
pub struct Kek {
    id: String,
    key: Arc<[u8; KEY_LEN]>,
}

impl Kek {
    /// Parses a KEK from base64 text (as in a key file or `TELECHART_KEYS__KEK`).
    pub fn from_base64(text: &str) -> Result<Kek> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| StoreError::Key("the key-encryption key is not valid base64".to_owned()))?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            StoreError::Key(format!("the key-encryption key must be {KEY_LEN} bytes, not {}", b.len()))
        })?;
        Ok(Kek::from_bytes(key))
    }

    fn from_bytes(key: [u8; KEY_LEN]) -> Kek {
        let fingerprint = digest::digest(&digest::SHA256, &key);
        let id = fingerprint.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect();
        Kek { id, key: Arc::new(key) }
    }

    /// A fresh random KEK.
    pub fn generate() -> Result<Kek> {
        let mut key = [0_u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| StoreError::Key("the system random source failed".to_owned()))?;
        Ok(Kek::from_bytes(key))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(*self.key)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn aead(&self) -> Result<LessSafeKey> {
        aead_key(&*self.key)
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

/// The KEKs a store may use: the current one wraps new DEKs; previous ones still unwrap DEKs
/// that have not been re-wrapped yet (during a KEK rotation).
#[derive(Clone, Debug)]
pub struct KeyConfig {
    pub current: Kek,
    pub previous: Vec<Kek>,
}

impl KeyConfig {
    pub fn new(current: Kek) -> Self {
        KeyConfig { current, previous: Vec::new() }
    }

    fn kek(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id)
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey> {
    let unbound =
        UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| StoreError::Key("invalid AES-256 key".to_owned()))?;
    Ok(LessSafeKey::new(unbound))
}

fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0_u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| StoreError::Key("the system random source failed".to_owned()))?;
    Ok(nonce)
}

/// `nonce ‖ ciphertext ‖ tag` under `key` with `aad`.
fn encrypt(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let nonce = random_nonce()?;
    let mut buffer = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buffer)
        .map_err(|_| StoreError::Key("encryption failed".to_owned()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buffer);
    Ok(out)
}

fn decrypt(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = body.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?;
    Some(plain.to_vec())
}

/// Where a PHI value lives; bound into its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct PhiSlot<'a> {
    pub tenant_id: &'a str,
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: &'a str,
}

impl PhiSlot<'_> {
    fn aad(&self) -> String {
        format!("telechart|{}|{}.{}|{}", self.tenant_id, self.table, self.column, self.row_id)
    }
}

/// A DEK as stored: wrapped by the KEK `kek_id`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DataKeyRow {
    pub tenant_id: String,
    pub id: String,
    pub wrapped: String,
    pub kek_id: String,
    pub active: i64,
}

/// Unwrapped DEKs in memory, and which one is active per tenant.
pub(crate) struct Keyring {
    pub config: RwLock<KeyConfig>,
    deks: RwLock<HashMap<String, Arc<LessSafeKey>>>,
    /// tenant → (active DEK id, when learned). Re-checked after [`ACTIVE_KEY_TTL`], so every
    /// instance moves to a rotated key without a restart.
    active: RwLock<HashMap<String, (String, Instant)>>,
    /// Bumped whenever a tenant's active key changes here, so a lookup that raced with a
    /// rotation does not cache the key it replaced.
    generation: std::sync::atomic::AtomicU64,
}

const ACTIVE_KEY_TTL: Duration = Duration::from_secs(30);

impl Keyring {
    pub fn new(config: KeyConfig) -> Self {
        Keyring {
            config: RwLock::new(config),
            deks: RwLock::default(),
            active: RwLock::default(),
            generation: Default::default(),
        }
    }

    /// Replaces the KEKs (an operator rolled the key files). Unwrapped data keys stay valid.
    pub fn reload(&self, config: KeyConfig) {
        if let Ok(mut current) = self.config.write() {
            *current = config;
        }
    }

    fn current_kek(&self) -> Result<Kek> {
        self.config
            .read()
            .map(|c| c.current.clone())
            .map_err(|_| StoreError::Key("key configuration lock poisoned".to_owned()))
    }

    pub fn cached_active(&self, tenant_id: &str) -> Option<String> {
        let active = self.active.read().ok()?;
        let (id, learned) = active.get(tenant_id)?;
        (learned.elapsed() < ACTIVE_KEY_TTL).then(|| id.clone())
    }

    pub fn forget_active(&self, tenant_id: &str) {
        if let Ok(mut active) = self.active.write() {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            active.remove(tenant_id);
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Caches `dek_id` as the tenant's active key, unless a rotation happened since `seen`.
    pub fn remember_active(&self, tenant_id: &str, dek_id: &str, seen: u64) {
        if let Ok(mut active) = self.active.write()
            && self.generation() == seen
        {
            active.insert(tenant_id.to_owned(), (dek_id.to_owned(), Instant::now()));
        }
    }

    /// Drops unwrapped keys from memory (after they were destroyed).
    pub fn forget_keys(&self, ids: &[String]) {
        if let Ok(mut deks) = self.deks.write() {
            for id in ids {
                deks.remove(id);
            }
        }
    }

    pub fn cached(&self, dek_id: &str) -> Option<Arc<LessSafeKey>> {
        self.deks.read().ok()?.get(dek_id).cloned()
    }

    /// Unwraps a stored DEK with whichever configured KEK wrapped it, and caches it.
    pub fn admit(&self, row: &DataKeyRow) -> Result<Arc<LessSafeKey>> {
        let config = self.config.read().map_err(|_| StoreError::Key("key configuration lock poisoned".to_owned()))?;
        let kek = config.kek(&row.kek_id).ok_or_else(|| {
            StoreError::Key(format!(
                "data key {} is wrapped by key-encryption key {}, which is not configured (current: {})",
                row.id, row.kek_id, config.current.id
            ))
        })?;
        let sealed =
            B64.decode(&row.wrapped).map_err(|_| StoreError::Corrupt(format!("data key {} is not base64", row.id)))?;
        let plain = decrypt(&kek.aead()?, dek_aad(&row.tenant_id, &row.id).as_bytes(), &sealed).ok_or_else(|| {
            StoreError::Key(format!("data key {} does not unwrap with key-encryption key {}", row.id, kek.id))
        })?;
        let key = Arc::new(aead_key(&plain)?);
        drop(config);
        if let Ok(mut deks) = self.deks.write() {
            deks.insert(row.id.clone(), key.clone());
        }
        Ok(key)
    }

    /// A new random DEK for `tenant_id`, wrapped by the current KEK.
    pub fn new_data_key(&self, tenant_id: &str) -> Result<DataKeyRow> {
        let mut key = [0_u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| StoreError::Key("the system random source failed".to_owned()))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let kek = self.current_kek()?;
        let wrapped = encrypt(&kek.aead()?, dek_aad(tenant_id, &id).as_bytes(), &key)?;
        Ok(DataKeyRow {
            tenant_id: tenant_id.to_owned(),
            id,
            wrapped: B64.encode(wrapped),
            kek_id: kek.id.clone(),
            active: 1,
        })
    }

    /// Re-wraps a DEK under the current KEK (KEK rotation); the DEK itself is unchanged.
    pub fn rewrap(&self, row: &DataKeyRow) -> Result<DataKeyRow> {
        let config = self.config.read().map_err(|_| StoreError::Key("key configuration lock poisoned".to_owned()))?;
        let old = config.kek(&row.kek_id).ok_or_else(|| {
            StoreError::Key(format!("data key {} is wrapped by unconfigured key-encryption key {}", row.id, row.kek_id))
        })?;
        let sealed =
            B64.decode(&row.wrapped).map_err(|_| StoreError::Corrupt(format!("data key {} is not base64", row.id)))?;
        let aad = dek_aad(&row.tenant_id, &row.id);
        let plain = decrypt(&old.aead()?, aad.as_bytes(), &sealed)
            .ok_or_else(|| StoreError::Key(format!("data key {} does not unwrap with {}", row.id, old.id)))?;
        let wrapped = encrypt(&config.current.aead()?, aad.as_bytes(), &plain)?;
        Ok(DataKeyRow { wrapped: B64.encode(wrapped), kek_id: config.current.id.clone(), ..row.clone() })
    }
}

fn dek_aad(tenant_id: &str, dek_id: &str) -> String {
    format!("telechart|{tenant_id}|data_keys|{dek_id}")
}

pub(crate) fn seal_with(dek_id: &str, key: &LessSafeKey, slot: PhiSlot<'_>, plaintext: &str) -> Result<String> {
    let sealed = encrypt(key, slot.aad().as_bytes(), plaintext.as_bytes())?;
    Ok(format!("{ENCRYPTED_V1}{dek_id}:{}", B64.encode(sealed)))
}

/// The DEK id a stored value was sealed with, if it is encrypted.
pub(crate) fn dek_of(stored: &str) -> Option<&str> {
    stored.strip_prefix(ENCRYPTED_V1)?.split(':').next()
}

pub(crate) fn open_with(key: &LessSafeKey, slot: PhiSlot<'_>, stored: &str) -> Result<String> {
    let body = stored.strip_prefix(ENCRYPTED_V1).and_then(|rest| rest.split_once(':')).map(|(_, b64)| b64).ok_or_else(
        || StoreError::Corrupt(format!("{}.{} of row {} is not sealed", slot.table, slot.column, slot.row_id)),
    )?;
    let sealed = B64.decode(body).map_err(|_| {
        StoreError::Corrupt(format!("{}.{} of row {} is not base64", slot.table, slot.column, slot.row_id))
    })?;
    let plain = decrypt(key, slot.aad().as_bytes(), &sealed).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{}.{} of row {} fails authentication (tampered, or copied from another row)",
            slot.table, slot.column, slot.row_id
        ))
    })?;
    String::from_utf8(plain)
        .map_err(|_| StoreError::Corrupt(format!("{}.{} of row {} is not UTF-8", slot.table, slot.column, slot.row_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(row: &str) -> PhiSlot<'_> {
        PhiSlot { tenant_id: "t", table: "visits", column: "patient", row_id: row }
    }

    #[test]
    fn sealed_values_open_only_in_their_own_slot() {
        let key = aead_key(&[7_u8; 32]).unwrap();
        let sealed = seal_with("d1", &key, slot("row-1"), "Patient/123").unwrap();
        assert!(sealed.starts_with("e1:d1:"));
        assert!(!sealed.contains("Patient/123"));
        assert_eq!(open_with(&key, slot("row-1"), &sealed).unwrap(), "Patient/123");
        let err = open_with(&key, slot("row-2"), &sealed).unwrap_err();
        assert!(err.to_string().contains("fails authentication"), "{err}");
        // Two seals of the same value differ (random nonce).
        assert_ne!(
            seal_with("d1", &key, slot("row-1"), "x").unwrap(),
            seal_with("d1", &key, slot("row-1"), "x").unwrap()
        );
    }

    #[test]
    fn keks_parse_strictly_and_never_print() {
        let kek = Kek::generate().unwrap();
        let again = Kek::from_base64(&kek.to_base64()).unwrap();
        assert_eq!(kek.id(), again.id());
        assert_eq!(format!("{kek:?}"), format!("Kek({})", kek.id()));
        assert!(Kek::from_base64("c2hvcnQ=").unwrap_err().to_string().contains("32 bytes"));
        assert!(Kek::from_base64("not base64!").is_err());
    }

    #[test]
    fn rewrapping_keeps_the_data_key() {
        let old = Kek::generate().unwrap();
        let ring = Keyring::new(KeyConfig::new(old.clone()));
        let row = ring.new_data_key("t").unwrap();
        let key = ring.admit(&row).unwrap();
        let sealed = seal_with(&row.id, &key, slot("r"), "v").unwrap();
        let new = Kek::generate().unwrap();
        let rotated = Keyring::new(KeyConfig { current: new.clone(), previous: vec![old] });
        let rewrapped = rotated.rewrap(&row).unwrap();
        assert_eq!(rewrapped.kek_id, new.id());
        let only_new = Keyring::new(KeyConfig::new(new));
        let key = only_new.admit(&rewrapped).unwrap();
        assert_eq!(open_with(&key, slot("r"), &sealed).unwrap(), "v");
        assert!(only_new.admit(&row).is_err(), "the old wrapping needs the old KEK");
    }
}
