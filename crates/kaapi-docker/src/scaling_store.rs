//! Scaling events in the release history (`scale ENV SERVICE=N…`): one row per service scaled.

use chrono::{DateTime, Utc};
use kaapi_core::scaling::ScalingEvent;
use rusqlite::params;

use crate::history::{Store, StoreError};

impl Store {
    /// Records `events` of `environment` at once.
    pub fn insert_scaling(
        &self,
        environment: &str,
        events: &[ScalingEvent],
    ) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let tx = connection.transaction().map_err(|e| self.sqlite(e))?;
        for event in events {
            tx.execute(
                "INSERT INTO scaling_events (environment, release, service, from_replicas,
                    to_replicas, config_replicas, author, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    environment,
                    event.release,
                    event.service,
                    event.from,
                    event.to,
                    event.config_replicas,
                    event.author,
                    event.at.to_rfc3339(),
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        }
        tx.commit().map_err(|e| self.sqlite(e))
    }

    /// Every scaling event of `environment`, oldest first.
    pub fn scaling_events(&self, environment: &str) -> Result<Vec<ScalingEvent>, StoreError> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare(
                "SELECT release, service, from_replicas, to_replicas, config_replicas, author, at
                 FROM scaling_events WHERE environment = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([environment], |row| {
                Ok((
                    ScalingEvent {
                        release: row.get(0)?,
                        service: row.get(1)?,
                        from: row.get(2)?,
                        to: row.get(3)?,
                        config_replicas: row.get(4)?,
                        author: row.get(5)?,
                        at: DateTime::<Utc>::UNIX_EPOCH,
                    },
                    row.get::<_, String>(6)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter()
            .map(|(mut event, at)| {
                event.at = DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| StoreError::Other {
                        path: self.path().to_path_buf(),
                        message: format!(
                            "scaling event of {}: bad time {at:?}: {e}",
                            event.service
                        ),
                    })?
                    .with_timezone(&Utc);
                Ok(event)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_events_read_back_per_environment_in_order() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("database opens");
        let event = |to: u32| ScalingEvent {
            release: 4,
            service: "backend".to_owned(),
            from: 2,
            to,
            config_replicas: 2,
            author: "ana".to_owned(),
            at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .expect("valid time")
                .with_timezone(&Utc),
        };
        store
            .insert_scaling("staging", &[event(3)])
            .expect("recorded");
        store
            .insert_scaling("staging", &[event(1)])
            .expect("recorded");
        store
            .insert_scaling("production", &[event(9)])
            .expect("recorded");
        let events = store.scaling_events("staging").expect("read back");
        assert_eq!(events, vec![event(3), event(1)]);
        assert!(store.scaling_events("preview").expect("read").is_empty());
    }
}
