//! What the commands run on: the data directory (an open [`Database`]) or, with `--url`, a
//! running `barq serve` ([`Client`]). Every operation returns the same value in both modes, so
//! each command formats its result once.

use std::path::PathBuf;

use barq_core::{CollectionConfig, Document, Error, Result, SearchHit};
use barq_storage::tiering::{BatchMoves, MaintenanceReport, MoveOutcome, TieringStatus};
use barq_storage::{
    CollectionStats, CompactionOutcome, Database, DatabaseStats, FlushOutcome, SearchRequest,
    SegmentEntry, StorageTier,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::remote::Client;

/// The database a command works on.
#[derive(Debug, Clone, Copy)]
pub enum Backend<'a> {
    /// The data directory, opened by this process.
    Local(&'a Database),
    /// A server, through its HTTP API.
    Remote(&'a Client),
}

/// `collection list`: every collection with its live documents, and where they live.
#[derive(Debug)]
pub struct CollectionList {
    /// The data directory (the server's, in remote mode).
    pub data_dir: PathBuf,
    /// Each collection and its document count.
    pub collections: Vec<(CollectionConfig, u64)>,
}

/// A search's answer: the hits and, when asked, what the search did.
#[derive(Debug, Deserialize)]
struct Explained {
    results: Vec<SearchHit>,
    #[serde(default)]
    explain: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Indexed {
    indexed: Vec<CompactionOutcome>,
}

#[derive(Debug, Deserialize)]
struct Segments {
    segments: Vec<SegmentEntry>,
}

#[derive(Debug, Deserialize)]
struct DeleteAnswer {
    deleted: Vec<String>,
    missing: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct MoveAnswer {
    moves: Vec<MoveOutcome>,
}

fn not_found_document(name: &str, id: &str) -> Error {
    Error::not_found(format!(
        "document \"{id}\" not found in collection \"{name}\""
    ))
}

impl Backend<'_> {
    /// `true` with `--url`.
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    pub fn create_collection(&self, config: &CollectionConfig) -> Result<()> {
        match self {
            Backend::Local(db) => db.create_collection(config.clone()),
            Backend::Remote(c) => {
                let body = json!({
                    "name": config.name,
                    "dimension": config.dimension,
                    "metric": config.metric,
                    "indexed_fields": config.indexed_fields,
                });
                c.call::<Value>("POST", "/v1/collections", &[], Some(&body))
                    .map(|_| ())
            }
        }
    }

    pub fn list(&self) -> Result<CollectionList> {
        match self {
            Backend::Local(db) => {
                let mut collections = Vec::new();
                for c in db.list_collections() {
                    let documents = db.count(&c.name)?;
                    collections.push((c, documents));
                }
                Ok(CollectionList {
                    data_dir: db.path().to_path_buf(),
                    collections,
                })
            }
            Backend::Remote(_) => {
                let stats = self.stats()?;
                let collections = stats
                    .collections
                    .into_iter()
                    .map(|s| {
                        let config = CollectionConfig {
                            name: s.name,
                            dimension: s.dimension,
                            metric: s.metric,
                            indexed_fields: s.indexed_fields,
                        };
                        (config, s.documents)
                    })
                    .collect();
                Ok(CollectionList {
                    data_dir: stats.data_dir,
                    collections,
                })
            }
        }
    }

    pub fn drop_collection(&self, name: &str) -> Result<()> {
        match self {
            Backend::Local(db) => db.drop_collection(name),
            Backend::Remote(c) => c
                .call::<Value>("DELETE", "/v1/collections/{name}", &[name], None)
                .map(|_| ()),
        }
    }

    pub fn collection_config(&self, name: &str) -> Result<CollectionConfig> {
        match self {
            Backend::Local(db) => db.collection_config(name),
            Backend::Remote(_) => {
                let s = self.collection_stats(name)?;
                Ok(CollectionConfig {
                    name: s.name,
                    dimension: s.dimension,
                    metric: s.metric,
                    indexed_fields: s.indexed_fields,
                })
            }
        }
    }

    pub fn upsert(&self, name: &str, docs: &[Document]) -> Result<()> {
        match self {
            Backend::Local(db) => db.upsert(name, docs).map(|_| ()),
            Backend::Remote(c) => {
                // Vectors go as base64 of their f32 bytes: exact, smaller, and several times
                // faster for the server to parse than JSON numbers.
                let docs: Vec<Value> = docs
                    .iter()
                    .map(|d| {
                        json!({
                            "id": d.id,
                            "vector": barq_core::encode_base64_vector(&d.vector),
                            "payload": d.payload,
                        })
                    })
                    .collect();
                let body = json!({ "documents": docs });
                c.call::<Value>(
                    "POST",
                    "/v1/collections/{name}/documents",
                    &[name],
                    Some(&body),
                )
                .map(|_| ())
            }
        }
    }

    /// The document, or a not-found error naming it.
    pub fn get(&self, name: &str, id: &str) -> Result<Document> {
        match self {
            Backend::Local(db) => db
                .get(name, id)?
                .ok_or_else(|| not_found_document(name, id)),
            Backend::Remote(c) => c.call(
                "GET",
                "/v1/collections/{name}/documents/{id}",
                &[name, id],
                None,
            ),
        }
    }

    /// Delete `ids` (distinct); returns (deleted, missing), each in the order given.
    pub fn delete(&self, name: &str, ids: &[&str]) -> Result<(Vec<String>, Vec<String>)> {
        match self {
            Backend::Local(db) => {
                // The data directory is locked for the whole command, so nothing can change
                // between the lookup and the delete.
                let report = db.delete_reporting(name, ids)?;
                Ok((report.deleted, report.missing))
            }
            Backend::Remote(c) => {
                let body = json!({ "ids": ids });
                let answer: DeleteAnswer = c.call(
                    "POST",
                    "/v1/collections/{name}/delete-documents",
                    &[name],
                    Some(&body),
                )?;
                Ok((answer.deleted, answer.missing))
            }
        }
    }

    /// The hits, and what the search did (as JSON) when `explain`.
    pub fn search(
        &self,
        name: &str,
        request: &SearchRequest,
        filter_json: Option<&Value>,
        explain: bool,
    ) -> Result<(Vec<SearchHit>, Option<Value>)> {
        match self {
            Backend::Local(db) => {
                let (hits, stats) = db.search_explained(name, request)?;
                let stats = explain
                    .then(|| serde_json::to_value(&stats))
                    .transpose()
                    .map_err(|e| Error::internal(format!("search statistics: {e}")))?;
                Ok((hits, stats))
            }
            Backend::Remote(c) => {
                let mut body = json!({
                    "vector": request.vector,
                    "k": request.k,
                    "with_payload": request.with_payload,
                    "exact": request.exact,
                    "explain": explain,
                });
                if let Some(n) = request.nprobe {
                    body["nprobe"] = n.into();
                }
                if let Some(r) = request.recall {
                    body["recall"] = r.into();
                }
                if let Some(f) = filter_json {
                    body["filter"] = f.clone();
                }
                let answer: Explained = c.call(
                    "POST",
                    "/v1/collections/{name}/search",
                    &[name],
                    Some(&body),
                )?;
                Ok((answer.results, answer.explain))
            }
        }
    }

    pub fn flush(&self, name: &str) -> Result<FlushOutcome> {
        match self {
            Backend::Local(db) => db.flush(name),
            Backend::Remote(c) => c.call("POST", "/v1/collections/{name}/flush", &[name], None),
        }
    }

    /// Build the missing indexes of `name` now: one outcome per segment indexed.
    pub fn add_indexed_fields(
        &self,
        name: &str,
        fields: &[barq_core::IndexedField],
    ) -> Result<Vec<barq_core::IndexedField>> {
        match self {
            Backend::Local(db) => db.add_indexed_fields(name, fields),
            Backend::Remote(c) => {
                #[derive(serde::Deserialize)]
                struct Added {
                    indexed_fields: Vec<barq_core::IndexedField>,
                }
                let added: Added = c.call(
                    "POST",
                    "/v1/collections/{name}/indexed-fields",
                    &[name],
                    Some(&json!({"indexed_fields": fields})),
                )?;
                Ok(added.indexed_fields)
            }
        }
    }

    /// Live documents, or those `filter` (its JSON and the parsed form) matches.
    pub fn count_matching(
        &self,
        name: &str,
        filter: Option<(&Value, &barq_core::Filter)>,
    ) -> Result<u64> {
        match self {
            Backend::Local(db) => match filter {
                Some((_, f)) => db.count_matching(name, f),
                None => db.count(name),
            },
            Backend::Remote(c) => {
                #[derive(serde::Deserialize)]
                struct Counted {
                    count: u64,
                }
                let body = match filter {
                    Some((v, _)) => json!({"filter": v}),
                    None => json!({}),
                };
                let counted: Counted =
                    c.call("POST", "/v1/collections/{name}/count", &[name], Some(&body))?;
                Ok(counted.count)
            }
        }
    }

    pub fn build_indexes(&self, name: &str) -> Result<Vec<CompactionOutcome>> {
        match self {
            Backend::Local(db) => db.build_indexes(name),
            Backend::Remote(c) => {
                let built: Indexed = c.operation(
                    "/v1/collections/{name}/index",
                    &[name],
                    json!({}),
                    &|_, _| {},
                )?;
                Ok(built.indexed)
            }
        }
    }

    pub fn compact(&self, name: &str) -> Result<CompactionOutcome> {
        match self {
            Backend::Local(db) => db.compact(name),
            // Asynchronous: a big compaction may outlast the server's request timeout.
            Backend::Remote(c) => c.operation(
                "/v1/collections/{name}/compact",
                &[name],
                json!({}),
                &|_, _| {},
            ),
        }
    }

    pub fn collection_stats(&self, name: &str) -> Result<CollectionStats> {
        match self {
            Backend::Local(db) => db.collection_stats(name),
            Backend::Remote(c) => c.call("GET", "/v1/collections/{name}", &[name], None),
        }
    }

    pub fn stats(&self) -> Result<DatabaseStats> {
        match self {
            Backend::Local(db) => db.stats(),
            Backend::Remote(c) => c.call("GET", "/v1/stats", &[], None),
        }
    }

    /// The collection's sealed segments.
    pub fn segments(&self, name: &str) -> Result<Vec<SegmentEntry>> {
        match self {
            Backend::Local(db) => db.tiering().segments(name),
            Backend::Remote(c) => {
                let answer: Segments =
                    c.call("GET", "/v1/collections/{name}/segments", &[name], None)?;
                Ok(answer.segments)
            }
        }
    }

    /// Move one segment to `to` (`Cold` or `Hot`), reporting the bytes transferred so far.
    /// Remotely this is an asynchronous operation of the server, polled until it ends.
    /// Move each of `ids` to `to`, going on after a failure (`TieringManager::move_segments`
    /// locally; one server operation per segment remotely). `progress(i, id, bytes)` as there.
    pub fn move_segments(
        &self,
        name: &str,
        ids: &[u64],
        to: StorageTier,
        sizes: &[u64],
        progress: &(dyn Fn(usize, u64, u64) + Sync),
    ) -> Result<BatchMoves> {
        match self {
            Backend::Local(db) => db.tiering().move_segments(name, ids, to, progress),
            Backend::Remote(_) => {
                let mut batch = BatchMoves::default();
                let mut done = 0;
                for (i, (&id, &size)) in ids.iter().zip(sizes).enumerate() {
                    progress(i, id, done);
                    let each = |n: u64| progress(i, id, done + n.min(size));
                    match self.move_segment(name, id, to, &each) {
                        Ok(o) => batch.moves.push(o),
                        Err(e) => batch.failures.push((id, e)),
                    }
                    done += size;
                    progress(i, id, done);
                }
                Ok(batch)
            }
        }
    }

    pub fn move_segment(
        &self,
        name: &str,
        id: u64,
        to: StorageTier,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<MoveOutcome> {
        match self {
            Backend::Local(db) => db
                .tiering()
                .move_segment_with_progress(name, id, to, progress),
            Backend::Remote(c) => {
                let route = match to {
                    StorageTier::Cold => "/v1/collections/{name}/offload",
                    StorageTier::Hot => "/v1/collections/{name}/hydrate",
                    StorageTier::Warm => {
                        return Err(Error::invalid(
                            "the server cannot move segments to the warm tier on request",
                        ));
                    }
                };
                let answer: MoveAnswer =
                    c.operation(route, &[name], json!({ "segments": [id] }), &|done, _| {
                        progress(done)
                    })?;
                answer.moves.into_iter().next().ok_or_else(|| {
                    Error::internal(format!(
                        "the server did not report the move of segment {id} of \"{name}\""
                    ))
                })
            }
        }
    }

    /// Pin (`pinned`) or unpin the collection, or one of its segments.
    pub fn set_pin(&self, name: &str, segment: Option<u64>, pinned: bool) -> Result<()> {
        match self {
            Backend::Local(db) if pinned => db.tiering().pin(name, segment),
            Backend::Local(db) => db.tiering().unpin(name, segment),
            Backend::Remote(c) => {
                let route = if pinned {
                    "/v1/collections/{name}/pin"
                } else {
                    "/v1/collections/{name}/unpin"
                };
                let body = json!({ "segment": segment });
                c.call::<Value>("POST", route, &[name], Some(&body))
                    .map(|_| ())
            }
        }
    }

    pub fn tiering_status(&self) -> Result<TieringStatus> {
        match self {
            Backend::Local(db) => db.tiering().status_with_store_check(),
            Backend::Remote(c) => c.call("GET", "/v1/tiering/status", &[], None),
        }
    }

    pub fn maintenance(&self) -> Result<MaintenanceReport> {
        match self {
            Backend::Local(db) => db.tiering().run_maintenance(),
            Backend::Remote(c) => {
                c.operation("/v1/tiering/maintenance", &[], json!({}), &|_, _| {})
            }
        }
    }
}
