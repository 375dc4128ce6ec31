//! `io.l5d.inMemory`: namespaces kept in this process (lost when it stops), seeded from the
//! config's `namespaces` map. Versions are one counter for the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use switchboard_namer_core::{Dtab, Updater};

use super::{Entry, Published, StoreError, StoreState};

pub struct MemoryStore {
    inner: Mutex<u64>,
    published: Published,
}

impl MemoryStore {
    pub fn new(namespaces: BTreeMap<String, Dtab>) -> MemoryStore {
        let published = Published::new();
        let mut m = BTreeMap::new();
        let mut version = 0;
        for (ns, d) in namespaces {
            version += 1;
            m.insert(
                ns,
                Entry {
                    version,
                    bytes: d.show().len(),
                    dtab: Ok(d),
                },
            );
        }
        published.replace(m);
        MemoryStore {
            inner: Mutex::new(version),
            published,
        }
    }

    pub(crate) fn published(&self) -> &Updater<StoreState> {
        &self.published.up
    }

    fn write(
        &self,
        ns: &str,
        f: impl FnOnce(Option<&Entry>) -> Result<bool, StoreError>,
        dtab: Option<&Dtab>,
    ) -> Result<u64, StoreError> {
        let mut counter = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.published.up.current();
        let m = cur.namespaces.as_deref().cloned().unwrap_or_default();
        if !f(m.get(ns))? {
            return Ok(*counter);
        }
        *counter += 1;
        let e = dtab.map(|d| Entry {
            version: *counter,
            bytes: d.show().len(),
            dtab: Ok(d.clone()),
        });
        self.published.apply(ns, e);
        Ok(*counter)
    }

    pub fn create(&self, ns: &str, dtab: &Dtab) -> Result<u64, StoreError> {
        self.write(
            ns,
            |e| match e {
                Some(_) => Err(StoreError::Exists(ns.to_string())),
                None => Ok(true),
            },
            Some(dtab),
        )
    }

    pub fn update(&self, ns: &str, dtab: &Dtab, expected: Option<u64>) -> Result<u64, StoreError> {
        self.write(ns, |e| check(ns, e, expected), Some(dtab))
    }

    pub fn delete(&self, ns: &str, expected: Option<u64>) -> Result<(), StoreError> {
        self.write(ns, |e| check(ns, e, expected), None).map(|_| ())
    }
}

/// The namespace exists and, when `expected` is given, is at that version.
pub(crate) fn check(
    ns: &str,
    e: Option<&Entry>,
    expected: Option<u64>,
) -> Result<bool, StoreError> {
    match (e, expected) {
        (None, _) => Err(StoreError::NotFound(ns.to_string())),
        (Some(e), Some(v)) if e.version != v => Err(StoreError::VersionMismatch {
            ns: ns.to_string(),
            expected: v,
            current: Some(e.version),
        }),
        _ => Ok(true),
    }
}
