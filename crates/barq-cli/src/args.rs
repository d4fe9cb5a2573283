//! The command line, as clap derive types. Parsing only: values that the engine validates (the
//! metric, names, vectors) are kept as given and checked by the command, so that every runtime
//! error is reported the same way (one `error: …` line).

use std::path::PathBuf;
use std::time::Duration;

use barq_storage::Durability;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod tier;
pub use tier::{MoveArgs, PinArgs, TierCommand};

const MAIN_AFTER_HELP: &str = "\
Examples:
  barq collection create docs --dim 3 --metric cosine
  barq upsert docs --file docs.jsonl
  barq search docs --vector '[0.1, 0.2, 0.3]' -k 5 --with-payload
  barq import sift base.fvecs
  barq --json stats
  barq tier offload docs --all
  barq --url http://127.0.0.1:6464 search docs --vector '[0.1, 0.2, 0.3]'

Client mode: with --url URL (or BARQ_URL) every command but `serve` works on a running
`barq serve` through its HTTP API instead of a data directory, with the same output and exit
status. Requests carry `Authorization: Bearer KEY` from --api-key / BARQ_API_KEY; routes that
need the admin key (drop, compact, index, tier offload/hydrate/pin/unpin/maintenance) send
BARQ_ADMIN_API_KEY when it is set. Offload and hydrate run as asynchronous operations of the
server, polled for their progress.

Exit status:
  0  success
  1  not found (a document, a collection, the data directory)
  2  invalid input or usage
  3  conflict (the collection exists, the data directory is locked by another process,
     a segment is busy being moved, a newer writer claimed the bucket), or a write sent
     to a read-only replica
  4  any other failure (I/O, corrupt data, an unreachable cold store); with --url also: the
     server cannot be reached, or it refused the API key (missing, wrong, or not the admin key)

Every --durability mode fsyncs the write-ahead log when the command ends; the mode only matters
if the machine crashes while a command runs (`none` makes big imports faster).
Segments can live in three tiers: hot (the data directory), warm (--warm-dir) and cold
(DATA_DIR/cold, a local directory in the layout of an object store); see `barq tier --help`.
Set RUST_LOG (e.g. RUST_LOG=barq_storage=debug) to see the engine's logs on stderr.";

/// Barq DB: a vector database, driven directly on its data directory or, with --url, through a
/// running `barq serve`.
#[derive(Debug, Parser)]
#[command(name = "barq", version, after_help = MAIN_AFTER_HELP)]
pub struct Cli {
    /// The data directory. Only `collection create` creates it.
    #[arg(
        long,
        global = true,
        env = "BARQ_DATA_DIR",
        default_value = "./barq-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Print one JSON document on stdout instead of human-readable text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Do not show progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// When writes are fsynced: before each write, every second, or only at exit.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "BARQ_DURABILITY",
        default_value_t = DurabilityArg::Sync
    )]
    pub durability: DurabilityArg,

    /// The warm tier: a second local directory for segments (e.g. a larger, slower disk).
    /// Give it to every command once a segment has been moved there, or those segments cannot
    /// be read.
    #[arg(long, global = true, env = "BARQ_WARM_DIR", value_name = "DIR")]
    pub warm_dir: Option<PathBuf>,

    /// Configuration file (TOML: `[storage]`, `[tiering]` and `[index]`; see
    /// docs/configuration.md).
    /// BARQ_* variables override it.
    #[arg(long, global = true, env = "BARQ_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// API key: the key `barq serve` requires, and the key sent with --url.
    #[arg(
        long,
        global = true,
        env = "BARQ_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,

    /// Work through the HTTP API of a running `barq serve` (e.g. http://127.0.0.1:6464)
    /// instead of opening a data directory. --data-dir, --durability, --warm-dir and --config
    /// are then the server's business and ignored.
    #[arg(long, global = true, env = "BARQ_URL", value_name = "URL")]
    pub url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    Sync,
    Interval,
    None,
}

impl DurabilityArg {
    /// The engine's setting.
    pub fn to_durability(self) -> Durability {
        match self {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Interval => Durability::Interval(Duration::from_secs(1)),
            DurabilityArg::None => Durability::None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list and drop collections.
    #[command(
        subcommand,
        after_help = "Examples:\n  barq collection create docs --dim 384 --metric cosine\n  \
                      barq collection list\n  barq collection drop docs"
    )]
    Collection(CollectionCommand),

    /// Insert or replace documents from a JSONL file.
    #[command(after_help = "\
Each line is one document: {\"id\": \"a\", \"vector\": [0.1, 0.2, 0.3], \"payload\": {\"k\": \"v\"}}
(`payload` is optional). Blank lines are skipped. The whole file is read and validated before
anything is written: a bad line is reported with its number and nothing is written.
For large files use `barq import`.

Examples:
  barq upsert docs --file docs.jsonl
  printf '{\"id\":\"a\",\"vector\":[1,0,0]}\\n' | barq upsert docs --file -")]
    Upsert(UpsertArgs),

    /// Bulk-load a large JSONL or .fvecs file, with a progress bar.
    #[command(after_help = "\
Formats:
  jsonl  one {\"id\", \"vector\", \"payload\"} document per line, as for `barq upsert`
  fvecs  the format of public ANN benchmark sets (SIFT, GIST): each vector is a little-endian
         i32 dimension followed by that many little-endian f32; document ids are the row
         numbers \"0\", \"1\", ...
The format is taken from the file extension unless --format is given.

Documents are written in batches; each batch is validated before it is written, so a bad line
stops the import at the batch that holds it and the error names the line (batches before it
stay written). The collection is flushed to a segment at the end.

Examples:
  barq collection create sift --dim 128 --metric l2
  barq import sift sift_base.fvecs
  barq import docs docs.jsonl --batch-size 5000
  zcat docs.jsonl.gz | barq import docs - --format jsonl")]
    Import(ImportArgs),

    /// Print one document.
    #[command(after_help = "\
Exits with status 1 if the document does not exist.

Examples:
  barq get docs a
  barq --json get docs a")]
    Get(GetArgs),

    /// Delete documents (deleting a missing id is not an error).
    #[command(after_help = "Examples:\n  barq delete docs a\n  barq delete docs a b c")]
    Delete(DeleteArgs),

    /// Find the k nearest neighbours of a vector (through the segments' indexes, or exactly).
    #[command(after_help = "\
Scores are similarities for cosine and dot (higher is closer) and distances for l2 (lower is
closer); results are always best first.

Examples:
  barq search docs --vector '[0.1, 0.2, 0.3]'
  barq search docs --vector 0.1,0.2,0.3 -k 3 --with-payload
  barq search docs --vector 0.1,0.2,0.3 --filter '{\"must\": [{\"key\": \"lang\", \"match\": {\"value\": \"en\"}}, {\"key\": \"year\", \"range\": {\"gte\": 2020}}]}'
  barq --json search docs --vector '[0.1, 0.2, 0.3]'

A filter is evaluated inside the scan, never after it: the k results are the k nearest among
the documents that match. A bad filter is an error that names the condition, and nothing runs.")]
    Search(SearchArgs),

    /// Count the live documents of a collection, or those a filter matches.
    #[command(after_help = "\
Examples:
  barq count docs
  barq count docs --filter '{\"must\": [{\"key\": \"lang\", \"match\": {\"value\": \"en\"}}]}'")]
    Count(CountArgs),

    /// Write the collection's in-memory documents to a segment file now.
    #[command(after_help = "Example:\n  barq flush docs")]
    Flush(NameArg),

    /// Merge all of the collection's segments into one now.
    #[command(after_help = "Example:\n  barq compact docs")]
    Compact(NameArg),

    /// Build the missing indexes of the collection's large hot segments now.
    #[command(after_help = "\
Segments of at least index_min_rows rows (20,000 by default) get an IVF index; background
compaction does the same one segment at a time. An indexed segment whose payload index lacks
a field the collection indexes (added with --field, or through the API) is rewritten with it.
`barq stats NAME` shows which segments are indexed.

Examples:
  barq index docs
  barq index docs --field lang:keyword --field year:integer")]
    Index(IndexArgs),

    /// Show statistics of every collection, or of one.
    #[command(after_help = "Examples:\n  barq stats\n  barq stats docs\n  barq --json stats")]
    Stats(StatsArgs),

    /// Move segments between the hot, warm and cold tiers; pin them; show where they are.
    #[command(subcommand, after_help = tier::TIER_AFTER_HELP)]
    Tier(TierCommand),

    /// Run the HTTP/JSON API server on the data directory (see docs/api.md).
    #[command(after_help = "\
With no configuration Barq runs on its embedded default: data in ./barq-data (created if
missing), the cold tier in ./barq-data/cold, listening on 127.0.0.1:6464. The cold store and
the tiering policy come from --config / BARQ_CONFIG and BARQ_* variables
(docs/configuration.md); maintenance runs every `maintenance_interval` (default 60s).

With BARQ_API_KEY set every request but /healthz and /readyz needs
`Authorization: Bearer <key>`; BARQ_ADMIN_API_KEY guards tiering, compaction and drop.
Binding to a non-loopback address without a key logs a warning.

SIGTERM or Ctrl-C stops accepting requests, finishes those in flight, waits for asynchronous
operations (up to --drain-timeout), fsyncs the write-ahead log and exits 0.

With --replica-of URL the node is a read-only replica: it has no write-ahead log of its own,
follows the newest manifest version the writer published to that bucket (polling every
--replica-poll-interval), and serves get, search, stats and metrics from the bucket through its
local cache. Writes and tiering operations answer 403 `read_only`; /readyz reports the lag.

Examples:
  barq serve
  barq serve --data-dir /var/lib/barq --listen 0.0.0.0:6464
  barq serve --data-dir /var/cache/barq-replica --listen 0.0.0.0:6465 --replica-of s3://b/barq
  BARQ_API_KEY=secret barq serve
  RUST_LOG=debug barq serve")]
    Serve(ServeArgs),

    /// Build a new data directory from a bucket that a writer shares (upload on seal).
    #[command(after_help = "\
Reads the newest manifest version under PREFIX/manifest/ that checks (a torn or altered one is
skipped and named), and writes it to the new --data-dir with every segment Cold: nothing but
metadata is copied, so it takes seconds whatever the data size. Segments are read by range when
queries need them and hydrated by the tiering policy as usual. Documents written after the
writer's last flush are not in the bucket (flushes happen at least every max_unflushed_age).

The endpoint, region and credentials come from the usual BARQ_S3_* / BARQ_STORAGE_* settings
and the provider's variables (AWS_*, GOOGLE_*, AZURE_*), as for the cold store. Serve the
restored node with the same store (BARQ_COLD_STORE_URL=URL): it becomes the bucket's writer and
fences a writer still running on it.

Examples:
  barq --data-dir /var/lib/barq-new restore --from s3://my-bucket/barq
  BARQ_S3_ENDPOINT=http://127.0.0.1:8333 barq --data-dir ./restored restore --from s3://b/p
  barq --data-dir ./restored restore --from file:///mnt/backup/barq")]
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The store to read: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or
    /// file:///path.
    #[arg(long, value_name = "URL")]
    pub from: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "BARQ_LISTEN",
        default_value = "127.0.0.1:6464",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
    /// Key for admin routes (tiering, compaction, drop); the API key when unset.
    #[arg(
        long,
        env = "BARQ_ADMIN_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub admin_api_key: Option<String>,
    /// Largest request body accepted, e.g. 64MiB.
    #[arg(
        long,
        env = "BARQ_MAX_BODY_BYTES",
        default_value = "64MiB",
        value_name = "SIZE"
    )]
    pub max_body_bytes: barq_config::Size,
    /// A request taking longer is answered 503 `timeout`, e.g. 60s.
    #[arg(
        long,
        env = "BARQ_REQUEST_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub request_timeout: barq_config::HumanDuration,
    /// How long shutdown waits for asynchronous operations.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub drain_timeout: barq_config::HumanDuration,
    /// Where clients reach this server (e.g. http://10.0.0.5:6464): published to the bucket
    /// with each manifest version, so that its replicas name it when they refuse a write.
    #[arg(long, env = "BARQ_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Serve as a read-only replica of the bucket a writer shares (upload on seal):
    /// s3://bucket/prefix, gs://…, az://… or file:///path. --data-dir is then the replica's own
    /// cache directory, never a writer's.
    #[arg(long, env = "BARQ_REPLICA_OF", value_name = "URL")]
    pub replica_of: Option<String>,
    /// How often a replica looks for a newer manifest version in the bucket.
    #[arg(
        long,
        env = "BARQ_REPLICA_POLL_INTERVAL",
        default_value = "1s",
        value_name = "DURATION"
    )]
    pub replica_poll_interval: barq_config::HumanDuration,
}

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Create a collection.
    #[command(after_help = "\
Names are 1 to 64 characters of [a-z0-9_-], starting with a letter or digit. The dimension
(1..=4096) and the metric are fixed for the life of the collection.

Examples:
  barq collection create docs --dim 384 --metric cosine
  barq collection create docs --dim 384 --metric cosine --index-field lang:keyword --index-field year:integer
  barq --data-dir /var/lib/barq collection create sift --dim 128 --metric l2")]
    Create(CreateArgs),

    /// List collections.
    #[command(after_help = "Examples:\n  barq collection list\n  barq --json collection list")]
    List,

    /// Drop a collection and all its documents.
    #[command(after_help = "Example:\n  barq collection drop docs")]
    Drop(NameArg),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Collection name.
    pub name: String,
    /// Vector dimension, 1..=4096.
    #[arg(long, value_name = "N")]
    pub dim: u32,
    /// Distance metric: cosine, l2 or dot.
    #[arg(long, value_name = "METRIC")]
    pub metric: String,
    /// Index a payload field in every indexed segment (for filters), as PATH:TYPE with TYPE
    /// keyword, integer, float or bool (repeatable).
    #[arg(long = "index-field", value_name = "PATH:TYPE")]
    pub index_fields: Vec<String>,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Collection name.
    pub name: String,
    /// First add this payload field to the collection's indexed fields, as PATH:TYPE with TYPE
    /// keyword, integer, float or bool (repeatable).
    #[arg(long = "field", value_name = "PATH:TYPE")]
    pub fields: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Collection name.
    pub name: String,
    /// Count only the documents this filter matches (JSON, as for `barq search --filter`).
    #[arg(long, value_name = "JSON")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Collection name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct UpsertArgs {
    /// Collection name.
    pub name: String,
    /// JSONL file of documents; `-` reads stdin.
    #[arg(long, short, value_name = "FILE")]
    pub file: PathBuf,
    /// Documents per write.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

/// `import --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON document per line.
    Jsonl,
    /// Little-endian i32 dimension + f32 components per vector.
    Fvecs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Collection name.
    pub name: String,
    /// The file; `-` reads stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// File format [default: from the extension, `.fvecs` or else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Documents per write.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Collection name.
    pub name: String,
    /// Document id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Collection name.
    pub name: String,
    /// Document ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Collection name.
    pub name: String,
    /// The query vector: a JSON array, or comma-separated numbers.
    #[arg(long, value_name = "VECTOR", allow_hyphen_values = true)]
    pub vector: String,
    /// Number of results, 1..=1000.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Also print each hit's payload.
    #[arg(long)]
    pub with_payload: bool,
    /// Brute force over every row, ignoring the segments' indexes (for checking recall).
    #[arg(long, conflicts_with_all = ["nprobe", "recall"])]
    pub exact: bool,
    /// Clusters probed per indexed segment (more: slower, higher recall).
    #[arg(long, value_name = "N")]
    pub nprobe: Option<usize>,
    /// Recall@10 to aim for, in (0, 1]: the probe count each index calibrated for it
    /// [default: 0.95].
    #[arg(long, value_name = "R", conflicts_with = "nprobe")]
    pub recall: Option<f32>,
    /// Also print what the search did: each segment's plan (index, exact or matches), rows
    /// the filter matched and how, clusters probed, rows scanned and re-ranked, requests and
    /// bytes fetched from the cold store.
    #[arg(long)]
    pub explain: bool,
    /// Only documents this filter matches: JSON such as
    /// '{"must": [{"key": "lang", "match": {"value": "en"}}]}' (see docs/api.md).
    #[arg(long, value_name = "JSON")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this collection.
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
